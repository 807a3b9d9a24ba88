package build

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	upstream "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
	"github.com/sirupsen/logrus"

	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/site/tomlpos"
)

// fixture is a world with no internet: a real registry (distribution, in-process) holding
// generated images, a file server for OS images, and a build.toml that names them.
type fixture struct {
	t        *testing.T
	dir      string // build.toml, build.lock, keys
	registry string // host:port
	blobGets atomic.Int64
	rangeGet atomic.Int64 // file GETs that resumed with a Range
	files    map[string][]byte
	cut      atomic.Bool // the next file GET is cut half-way
	pub      ed25519.PublicKey
	created  time.Time
	osSHA    string
	rawSHA   string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, dir: t.TempDir(), files: map[string][]byte{}, created: time.Unix(1700000000, 0).UTC()}
	// The upstream registry the build pulls from; cairn's own registry takes no pushes.
	h := upstream.New(upstream.Logger(log.New(io.Discard, "", 0)))
	blobRe := regexp.MustCompile(`/blobs/sha256:`)
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && blobRe.MatchString(r.URL.Path) {
			f.blobGets.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(reg.Close)
	f.registry = strings.TrimPrefix(reg.URL, "http://")

	// Images that share a base layer, and a two-platform index.
	base := layer(t, 1, 64<<10)
	f.push("team/web:1.0", img(t, "amd64", base, layer(t, 2, 32<<10)))
	f.push("team/api:2.0", img(t, "amd64", base, layer(t, 3, 48<<10)))
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: img(t, "amd64", base, layer(t, 4, 16<<10)), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: img(t, "arm64", layer(t, 5, 64<<10), layer(t, 6, 16<<10)), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	ref, err := name.ParseReference(f.registry + "/tools/multi:3")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}

	// An OS image, zstd-compressed as most are published.
	raw := make([]byte, 1<<20)
	rand.New(rand.NewSource(7)).Read(raw[:256<<10]) // the rest stays zero, as disks are
	enc, _ := zstd.NewWriter(nil)
	f.files["/debian-12.raw.zst"] = enc.EncodeAll(raw, nil)
	f.files["/ipxe.efi"] = []byte("not really ipxe, but bytes to carry")
	f.osSHA, f.rawSHA = sum(f.files["/debian-12.raw.zst"]), sum(raw)
	fs := httptest.NewServer(http.HandlerFunc(f.serveFile))
	t.Cleanup(fs.Close)

	priv, pub, err := airgap.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	f.write("keys/bundle.key", string(priv))
	f.pub, err = airgap.ParsePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	f.write("build.toml", fmt.Sprintf(`[signing]
key = "keys/bundle.key"

[[container]]
ref = "%[1]s/team/web:1.0"

[[container]]
ref = "%[1]s/team/api:2.0"

[[container]]
ref = "%[1]s/tools/multi:3"
platforms = ["linux/amd64", "linux/arm64"]

[[os_image]]
name = "debian-12"
source = "%[2]s/debian-12.raw.zst"
sha256 = "%[3]s"
format = "raw+zstd"
uncompressed_sha256 = "%[4]s"

[[netboot]]
name = "ipxe-efi"
type = "ipxe"
source = "%[2]s/ipxe.efi"
sha256 = "%[5]s"
`, f.registry, fs.URL, f.osSHA, f.rawSHA, sum(f.files["/ipxe.efi"])))
	return f
}

// serveFile serves f.files with Range support, cutting the connection half-way through the
// body once when f.cut is set.
func (f *fixture) serveFile(w http.ResponseWriter, r *http.Request) {
	b, ok := f.files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Header.Get("Range") != "" && r.Method == http.MethodGet {
		f.rangeGet.Add(1)
	}
	if r.Method == http.MethodGet && r.Header.Get("Range") == "" && f.cut.CompareAndSwap(true, false) {
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(b[:len(b)/2])
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
		return
	}
	http.ServeContent(w, r, r.URL.Path, time.Unix(0, 0), bytes.NewReader(b))
}

func (f *fixture) push(repo string, im v1.Image) {
	f.t.Helper()
	ref, err := name.ParseReference(f.registry + "/" + repo)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := remote.Write(ref, im); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) write(rel, content string) {
	f.t.Helper()
	p := filepath.Join(f.dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) options(out, cache string) Options {
	return Options{Config: filepath.Join(f.dir, "build.toml"), Output: out, CacheDir: cache, Created: f.created}
}

// layer makes a gzipped tar layer of random content; seed only tells layers apart in the code.
func layer(t *testing.T, _ int, size int64) v1.Layer {
	t.Helper()
	l, err := random.Layer(size, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func img(t *testing.T, arch string, layers ...v1.Layer) v1.Image {
	t.Helper()
	im, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := im.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	im, err = mutate.ConfigFile(im, cf)
	if err != nil {
		t.Fatal(err)
	}
	return mutate.MediaType(im, types.OCIManifestSchema1)
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// treeSums maps every file under dir to its sha256.
func treeSums(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = sum(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// leftovers lists what a build left beside its output, other than the output itself.
func leftovers(t *testing.T, parent, out string) []string {
	t.Helper()
	ents, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	var extra []string
	for _, e := range ents {
		if filepath.Join(parent, e.Name()) != out {
			extra = append(extra, e.Name())
		}
	}
	return extra
}

func TestBuildWritesVerifiedStore(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	parent := t.TempDir()
	out := filepath.Join(parent, "store")
	cache := t.TempDir()

	plan, err := Run(ctx, func() Options { o := f.options(out, cache); o.PlanOnly = true; return o }())
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	if f.blobGets.Load() != 0 {
		t.Errorf("--plan fetched %d blobs, want none", f.blobGets.Load())
	}
	if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("--plan created %s", out)
	}

	var lines bytes.Buffer
	o := f.options(out, cache)
	o.Progress = &lines // not a terminal: one line per finished artifact
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, problems := airgap.Verify(ctx, out, f.pub); problems != nil {
		t.Fatalf("Verify(store) = %v", problems)
	}
	n := 0
	for _, l := range strings.Split(lines.String(), "\n") {
		if strings.HasPrefix(l, "done ") {
			n++
		}
	}
	if n != 5 {
		t.Errorf("progress printed %d done lines for 5 artifacts:\n%s", n, lines.String())
	}
	if got := leftovers(t, parent, out); len(got) != 0 {
		t.Errorf("left beside the store: %v", got)
	}

	// The plan's numbers are what was written.
	bundle := map[string]airgap.Artifact{}
	for _, a := range res.Index.Artifacts {
		bundle[a.Ref()] = a
	}
	for _, a := range plan.Plan.Artifacts {
		switch a.Kind {
		case "image":
			b, ok := bundle[a.Ref]
			if !ok {
				t.Errorf("planned image %s (%s) is not in bundle.json", a.Name, a.Ref)
				continue
			}
			if a.Size != b.Size {
				t.Errorf("planned size of %s = %d, written %d", a.Name, a.Size, b.Size)
			}
		default:
			src := f.files["/"+map[string]string{"os_image": "debian-12.raw.zst", "netboot": "ipxe.efi"}[a.Kind]]
			if a.Size != int64(len(src)) {
				t.Errorf("planned size of %s %s = %d, want %d", a.Kind, a.Name, a.Size, len(src))
			}
		}
	}
	// Every planned blob is in the store with its planned size; all else is the few hundred
	// bytes of manifest and config the store wraps each file in.
	var planned, metadata int64
	blobsDir := filepath.Join(out, "docker", "registry", "v2", "blobs", "sha256")
	err = filepath.WalkDir(blobsDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Name() != "data" {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if want, ok := plan.Plan.blobs[filepath.Base(filepath.Dir(p))]; ok {
			if want != info.Size() {
				t.Errorf("blob %s: planned %d bytes, written %d", p, want, info.Size())
			}
			planned += info.Size()
		} else {
			metadata += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if planned != plan.Plan.Unique || metadata > 4<<10 {
		t.Errorf("store holds %d bytes of planned blobs (plan: %d) and %d bytes of other blobs", planned, plan.Plan.Unique, metadata)
	}
	if got := res.Index.Totals.StoredBytes; got != planned+metadata {
		t.Errorf("bundle.json says %d bytes stored, the blobs add up to %d", got, planned+metadata)
	}
	if plan.Plan.Total <= plan.Plan.Unique {
		t.Errorf("plan total %d <= unique %d: the shared base layer was not de-duplicated", plan.Plan.Total, plan.Plan.Unique)
	}

	// The lock pins every image and source, and reads back the same.
	lock, err := ReadLock(filepath.Join(f.dir, "build.lock"))
	if err != nil || lock == nil {
		t.Fatalf("ReadLock() = %v, %v", lock, err)
	}
	if len(lock.Containers) != 3 || len(lock.Sources) != 2 {
		t.Errorf("lock pins %d images and %d sources, want 3 and 2", len(lock.Containers), len(lock.Sources))
	}
	again, _ := lock.Marshal()
	first, _ := os.ReadFile(filepath.Join(f.dir, "build.lock"))
	if !bytes.Equal(again, first) {
		t.Errorf("the lock does not read back to the same bytes")
	}
}

func TestWarmRebuildFetchesNoBlob(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	cache := t.TempDir()
	if _, err := Run(ctx, f.options(filepath.Join(t.TempDir(), "a"), cache)); err != nil {
		t.Fatal(err)
	}
	cold := f.blobGets.Load()
	if cold == 0 {
		t.Fatal("the cold build fetched no blob from the registry")
	}
	res, err := Run(ctx, f.options(filepath.Join(t.TempDir(), "b"), cache))
	if err != nil {
		t.Fatal(err)
	}
	if warm := f.blobGets.Load() - cold; warm != 0 || res.BlobsFetched != 0 {
		t.Errorf("warm rebuild: registry saw %d blob GETs, build counted %d fetched; want 0 and 0", warm, res.BlobsFetched)
	}
	if res.BlobsCached == 0 {
		t.Error("warm rebuild took nothing from the cache")
	}
}

func TestBuildIsReproducible(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	if _, err := Run(ctx, f.options(a, t.TempDir())); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(ctx, func() Options { o := f.options(b, t.TempDir()); o.Locked = true; o.Jobs = 1; return o }()); err != nil {
		t.Fatal(err)
	}
	sa, sb := treeSums(t, a), treeSums(t, b)
	if len(sa) == 0 || len(sa) != len(sb) {
		t.Fatalf("stores hold %d and %d files", len(sa), len(sb))
	}
	for p, h := range sa {
		if sb[p] != h {
			t.Errorf("%s differs between two builds of the same inputs", p)
		}
	}
}

func TestChecksumMismatch(t *testing.T) {
	f := newFixture(t)
	toml, _ := os.ReadFile(filepath.Join(f.dir, "build.toml"))
	wrong := strings.Repeat("0", 64)
	f.write("build.toml", strings.Replace(string(toml), f.osSHA, wrong, 1))
	parent := t.TempDir()
	out := filepath.Join(parent, "store")
	_, err := Run(context.Background(), f.options(out, t.TempDir()))
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("Run() = %v, want ErrChecksum", err)
	}
	for _, want := range []string{"os_image debian-12", "/debian-12.raw.zst", "expected sha256 " + wrong, "got " + f.osSHA} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if got := leftovers(t, parent, ""); len(got) != 0 {
		t.Errorf("a failed build left %v", got)
	}
}

func TestInterruptedDownloadResumes(t *testing.T) {
	f := newFixture(t)
	f.cut.Store(true)
	out := filepath.Join(t.TempDir(), "store")
	if _, err := Run(context.Background(), f.options(out, t.TempDir())); err != nil {
		t.Fatal(err)
	}
	if f.cut.Load() {
		t.Fatal("no download was cut")
	}
	if f.rangeGet.Load() == 0 {
		t.Error("the download was started again from the beginning, not resumed with a Range request")
	}
	if _, problems := airgap.Verify(context.Background(), out, f.pub); problems != nil {
		t.Fatal(problems)
	}
}

func TestLocked(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	o := f.options(filepath.Join(t.TempDir(), "a"), t.TempDir())
	o.Locked = true
	if _, err := Run(ctx, o); err == nil || !strings.Contains(err.Error(), "no ") {
		t.Fatalf("--locked without a lock: %v, want an error", err)
	}
	first, err := Run(ctx, f.options(filepath.Join(t.TempDir(), "b"), t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	// The tag moves upstream; --locked still builds what the lock pins.
	f.push("team/web:1.0", img(t, "amd64", layer(t, 9, 8<<10)))
	o.Output = filepath.Join(t.TempDir(), "c")
	locked, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := digestOf(locked, "team/web"), digestOf(first, "team/web"); got != want {
		t.Errorf("--locked carried web %s, want the pinned %s", got, want)
	}
	// Without --locked the lock follows the tag.
	moved, err := Run(ctx, f.options(filepath.Join(t.TempDir(), "d"), t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if digestOf(moved, "team/web") == digestOf(first, "team/web") {
		t.Error("a build without --locked did not follow the moved tag")
	}
	// A lock that does not pin an image build.toml names fails --locked.
	toml, _ := os.ReadFile(filepath.Join(f.dir, "build.toml"))
	f.push("team/new:1", img(t, "amd64", layer(t, 10, 8<<10)))
	f.write("build.toml", string(toml)+fmt.Sprintf("\n[[container]]\nref = %q\n", f.registry+"/team/new:1"))
	o.Output = filepath.Join(t.TempDir(), "e")
	if _, err := Run(ctx, o); err == nil || !strings.Contains(err.Error(), "does not pin image") {
		t.Errorf("--locked with an unpinned image: %v", err)
	}
}

func digestOf(r *Result, repo string) string {
	for _, a := range r.Index.Artifacts {
		if strings.HasSuffix(a.Repository, repo) {
			return a.Digest.String()
		}
	}
	return ""
}

func TestPlanRefusesWhatDoesNotFit(t *testing.T) {
	f := newFixture(t)
	old := statfs
	t.Cleanup(func() { statfs = old })
	statfs = func(path string) (uint64, uint64, error) { return 100 << 10, 1, nil } // 100 KiB free
	parent := t.TempDir()
	_, err := Run(context.Background(), f.options(filepath.Join(parent, "store"), t.TempDir()))
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "100.0 KiB free") {
		t.Fatalf("Run() = %v, want ErrNoSpace with the numbers", err)
	}
	if f.blobGets.Load() != 0 {
		t.Errorf("a refused build fetched %d blobs", f.blobGets.Load())
	}
	if got := leftovers(t, parent, ""); len(got) != 0 {
		t.Errorf("a refused build left %v", got)
	}
}

// TestPlanRefusesOnRealFilesystem checks the real statfs on a 128 KiB tmpfs.
func TestPlanRefusesOnRealFilesystem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root; run the tests as root to cover the real free-space check")
	}
	f := newFixture(t)
	mnt := t.TempDir()
	if out, err := runCmd("mount", "-t", "tmpfs", "-o", "size=128k", "cairn-test", mnt); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() { _, _ = runCmd("umount", mnt) })
	_, err := Run(context.Background(), f.options(filepath.Join(mnt, "store"), t.TempDir()))
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Run() onto a 128 KiB tmpfs = %v, want ErrNoSpace", err)
	}
}

func TestCancelLeavesNothing(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	// A source that never finishes: the build is cancelled while fetching it.
	started := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			w.Header().Set("Content-Length", "1000000")
			return
		}
		w.Header().Set("Content-Length", "1000000")
		_, _ = w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		close(started)
		<-r.Context().Done()
	}))
	t.Cleanup(slow.Close)
	toml, _ := os.ReadFile(filepath.Join(f.dir, "build.toml"))
	f.write("build.toml", string(toml)+fmt.Sprintf("\n[[file]]\nname = \"slow\"\nsource = %q\nsha256 = %q\n", slow.URL+"/slow.bin", strings.Repeat("a", 64)))
	go func() { <-started; cancel() }()
	parent := t.TempDir()
	out := filepath.Join(parent, "store")
	cache := t.TempDir()
	if _, err := Run(ctx, f.options(out, cache)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run() = %v, want context.Canceled", err)
	}
	if got := leftovers(t, parent, ""); len(got) != 0 {
		t.Errorf("a cancelled build left %v beside its output", got)
	}
	// The cache keeps verified blobs and the partial download to resume, and nothing else.
	if got := leftovers(t, filepath.Join(cache, "tmp"), ""); len(got) != 0 {
		t.Errorf("a cancelled build left %v in the cache's tmp/", got)
	}
	if _, err := os.Stat(filepath.Join(cache, "partial", strings.Repeat("a", 64))); err != nil {
		t.Errorf("the interrupted download was not kept for resuming: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "build.toml")
	src := `[signing]
key = "k"

[[container]]
ref = "Not A Ref"

[[container]]
ref = "docker.io/library/nginx:1.27"
platforms = ["linux", "linux/amd64", "linux/amd64"]

[[container]]
ref = "nginx:1.27"

[[os_image]]
name = "debian"
source = "x.raw"
sha256 = "abc"
format = "iso"

[[os_image]]
name = "debian"
source = "y.raw"
sha256 = "` + strings.Repeat("a", 64) + `"

[netbot]
`
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(p)
	var errs tomlpos.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("LoadConfig() = %v, want positioned errors", err)
	}
	want := []string{
		":5:7: container[0].ref: \"Not A Ref\" is not an image reference",
		":9:14: container[1].platforms[0]: \"linux\" is not a platform",
		":9:38: container[1].platforms[2]: platform linux/amd64 is listed twice",
		":12:7: container[2].ref: docker.io/library/nginx:1.27 is already carried by",
		":17:10: os_image[0].sha256: expected 64 lowercase hexadecimal digits",
		":18:10: os_image[0].format: expected one of",
		":21:8: os_image[1].name: os_image \"debian\" is already defined at",
		":25:2: netbot: unknown key in build file; did you mean \"netboot\"?",
	}
	got := err.Error()
	for _, w := range want {
		if !strings.Contains(got, p+w) {
			t.Errorf("errors lack %q:\n%s", w, got)
		}
	}
	if len(errs) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(errs), len(want), got)
	}
}

func FuzzLoadConfig(f *testing.F) {
	f.Add("[signing]\nkey = \"k\"\n[[container]]\nref = \"nginx:1\"\nplatforms = [\"linux/amd64\"]\n")
	f.Add("[[os_image]]\nname=\"a\"\nsource=\"b\"\nsha256=\"c\"\n[appliance]\nbase=\"x\"\nsha256=1\n")
	f.Add("[agent]\nkernel = { source = \"k.deb\", sha256 = \"x\" }\nmodules = [\"nvme\", 1, \"\"]\nfirmware = [{ source = 2 }]\nbinary = \"b\"\n")
	dir := f.TempDir()
	p := filepath.Join(dir, "build.toml")
	f.Fuzz(func(t *testing.T, src string) {
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(p)
		if err == nil && c == nil {
			t.Fatal("LoadConfig() = nil, nil")
		}
		var errs tomlpos.Errors
		if err != nil && errors.As(err, &errs) {
			for _, e := range errs {
				if e.Line < 1 || e.Column < 1 {
					t.Fatalf("problem without a position: %+v", e)
				}
			}
		}
	})
}

func runCmd(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}

func TestMain(m *testing.M) {
	logrus.SetOutput(io.Discard) // distribution's request log; the tests check what matters
	os.Exit(m.Run())
}
