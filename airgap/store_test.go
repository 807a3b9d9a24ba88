package airgap_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/ulikunitz/xz"
	"golang.org/x/sync/errgroup"

	"github.com/cairn-appliance/cairn/airgap"
)

// fixture is a deterministic set of inputs: images, an index, an OS image, a netboot asset and
// a file, with a layer shared between two images.
type fixture struct {
	images  map[string]v1.Image
	indexes map[string]v1.ImageIndex
	os      airgap.OSImage
	netboot airgap.NetbootAsset
	file    airgap.File
	raw     []byte // the OS image's uncompressed content
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{images: map[string]v1.Image{}, indexes: map[string]v1.ImageIndex{}}

	shared, err := random.Layer(4096, types.DockerLayer)
	must(t, err)
	app, err := random.Image(3000, 3)
	must(t, err)
	app, err = mutate.AppendLayers(app, shared)
	must(t, err)
	app = withPlatform(t, app, "linux", "arm64", "v8")
	f.images["registry.example.com/team/app:1.0"] = app

	// An OCI image with the same shared layer, so the store holds it once.
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	ociLayer, err := random.Layer(2048, types.OCILayer)
	must(t, err)
	oci, err := mutate.AppendLayers(base, ociLayer, shared)
	must(t, err)
	f.images["nginx:1.27"] = oci

	idx, err := random.Index(1024, 2, 2)
	must(t, err)
	f.indexes["quay.io/example/multi:v2"] = idx

	// A Docker manifest list with platforms, one of whose images is also stored on its own.
	amd64, err := random.Image(1500, 2)
	must(t, err)
	amd64 = withPlatform(t, amd64, "linux", "amd64", "")
	list := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.DockerManifestList),
		mutate.IndexAddendum{Add: amd64, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: app, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
	)
	f.indexes["busybox:1.36"] = list

	dir := t.TempDir()
	rng := rand.New(rand.NewSource(1))
	f.raw = make([]byte, 64<<10)
	rng.Read(f.raw[:32<<10]) // half random, half zeros, like a disk
	var zbuf bytes.Buffer
	zw, err := zstd.NewWriter(&zbuf)
	must(t, err)
	_, err = zw.Write(f.raw)
	must(t, err)
	must(t, zw.Close())
	f.os = airgap.OSImage{Name: "debian-12", Tag: "20261101", Path: write(t, dir, "debian-12.raw.zst", zbuf.Bytes()), Format: airgap.FormatRawZstd}

	kernel := make([]byte, 5000)
	rng.Read(kernel)
	f.netboot = airgap.NetbootAsset{Name: "debian-12/vmlinuz", Tag: "6.1", Path: write(t, dir, "vmlinuz", kernel), Type: airgap.NetbootKernel}
	f.file = airgap.File{Name: "motd", Path: write(t, dir, "motd", []byte("welcome to the rack\n"))}
	return f
}

func withPlatform(t testing.TB, img v1.Image, os, arch, variant string) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	must(t, err)
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = os, arch, variant
	img, err = mutate.ConfigFile(img, cf)
	must(t, err)
	return img
}

// adds returns one closure per artifact, so tests can add them in any order.
func (f *fixture) adds() []func(context.Context, *airgap.Store) error {
	var out []func(context.Context, *airgap.Store) error
	names := make([]string, 0, len(f.images))
	for name := range f.images {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		img := f.images[name]
		out = append(out, func(ctx context.Context, s *airgap.Store) error { return s.AddImage(ctx, name, img) })
	}
	names = names[:0]
	for name := range f.indexes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		idx := f.indexes[name]
		out = append(out, func(ctx context.Context, s *airgap.Store) error { return s.AddIndex(ctx, name, idx) })
	}
	out = append(out,
		func(ctx context.Context, s *airgap.Store) error { return s.AddOSImage(ctx, f.os) },
		func(ctx context.Context, s *airgap.Store) error { return s.AddNetboot(ctx, f.netboot) },
		func(ctx context.Context, s *airgap.Store) error { return s.AddFile(ctx, f.file) },
	)
	return out
}

var epoch = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// writeStore writes the fixture into dir in the given order and seals it.
func writeStore(t testing.TB, f *fixture, dir string, key ed25519.PrivateKey, order []int) *airgap.Index {
	t.Helper()
	ctx := context.Background()
	s, err := airgap.Create(ctx, airgap.StoreConfig{Dir: dir, Created: epoch})
	must(t, err)
	adds := f.adds()
	if order == nil {
		for i := range adds {
			order = append(order, i)
		}
	}
	for _, i := range order {
		must(t, adds[i](ctx, s))
	}
	ix, err := s.Seal(ctx, key)
	must(t, err)
	return ix
}

// writeConcurrently adds every artifact of the fixture at once and seals the store.
func writeConcurrently(t testing.TB, f *fixture, key ed25519.PrivateKey) string {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	s, err := airgap.Create(ctx, airgap.StoreConfig{Dir: dir, Created: epoch})
	must(t, err)
	var g errgroup.Group
	for _, add := range f.adds() {
		g.Go(func() error { return add(ctx, s) })
	}
	must(t, g.Wait())
	_, err = s.Seal(ctx, key)
	must(t, err)
	return dir
}

func newKey(t testing.TB) (ed25519.PrivateKey, ed25519.PublicKey) {
	t.Helper()
	privPEM, pubPEM, err := airgap.GenerateKey()
	must(t, err)
	priv, err := airgap.ParsePrivateKey(privPEM)
	must(t, err)
	pub, err := airgap.ParsePublicKey(pubPEM)
	must(t, err)
	return priv, pub
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func write(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	must(t, os.WriteFile(p, b, 0o644))
	return p
}

// treeSums maps every path in dir (directories too) to the sha256 of its content.
func treeSums(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			out[rel+"/"] = "dir"
			return nil
		}
		fh, err := os.Open(p)
		if err != nil {
			return err
		}
		defer fh.Close()
		h := sha256.New()
		if _, err := io.Copy(h, fh); err != nil {
			return err
		}
		out[rel] = hex.EncodeToString(h.Sum(nil))
		return nil
	})
	must(t, err)
	return out
}

func TestStoreIndex(t *testing.T) {
	f := newFixture(t)
	priv, _ := newKey(t)
	dir := t.TempDir()
	ix := writeStore(t, f, dir, priv, nil)

	byRepo := map[string]airgap.Artifact{}
	for _, a := range ix.Artifacts {
		byRepo[a.Repository] = a
	}
	for _, tc := range []struct {
		repo, tag string
		kind      airgap.Kind
		platforms int
	}{
		{"docker.io/library/nginx", "1.27", airgap.KindImage, 0},
		{"registry.example.com/team/app", "1.0", airgap.KindImage, 1},
		{"quay.io/example/multi", "v2", airgap.KindImage, 0},
		{"docker.io/library/busybox", "1.36", airgap.KindImage, 2},
		{"os/debian-12", "20261101", airgap.KindOS, 0},
		{"netboot/debian-12/vmlinuz", "6.1", airgap.KindNetboot, 0},
		{"files/motd", "latest", airgap.KindFile, 0},
	} {
		a, ok := byRepo[tc.repo]
		if !ok {
			t.Errorf("bundle.json has no artifact in %s; has %v", tc.repo, ix.Artifacts)
			continue
		}
		if a.Tag != tc.tag || a.Kind != tc.kind {
			t.Errorf("%s: tag %q kind %q, want %q %q", tc.repo, a.Tag, a.Kind, tc.tag, tc.kind)
		}
		if len(a.Platforms) != tc.platforms {
			t.Errorf("%s: platforms %v, want %d", tc.repo, a.Platforms, tc.platforms)
		}
		if a.Size <= 0 {
			t.Errorf("%s: size %d, want > 0", tc.repo, a.Size)
		}
	}
	if got := strings.Join(byRepo["docker.io/library/busybox"].Platforms, " "); got != "linux/amd64 linux/arm64/v8" {
		t.Errorf("busybox platforms = %s, want linux/amd64 linux/arm64/v8", got)
	}
	want, _ := f.images["registry.example.com/team/app:1.0"].Digest()
	if got := byRepo["registry.example.com/team/app"].Digest.String(); got != want.String() {
		t.Errorf("app digest = %s, want %s", got, want)
	}
	osA := byRepo["os/debian-12"]
	sum := sha256.Sum256(f.raw)
	if osA.OS == nil || osA.OS.Format != airgap.FormatRawZstd || osA.OS.UncompressedSize != int64(len(f.raw)) ||
		osA.OS.UncompressedDigest.Encoded() != hex.EncodeToString(sum[:]) {
		t.Errorf("os image info = %+v, want raw+zstd, %d bytes, sha256:%x", osA.OS, len(f.raw), sum)
	}
	if ix.Totals.StoredBytes >= ix.Totals.Bytes {
		t.Errorf("totals %+v: the shared layer should make stored bytes smaller than bytes", ix.Totals)
	}
	if ix.Created != "2026-11-01T00:00:00Z" {
		t.Errorf("created = %q, want 2026-11-01T00:00:00Z", ix.Created)
	}

	b, err := os.ReadFile(filepath.Join(dir, airgap.IndexFile))
	must(t, err)
	if bytes.ContainsAny(b, " \n\t") {
		t.Errorf("bundle.json has insignificant space: %.200s", b)
	}
	if !strings.HasPrefix(string(b), `{"artifacts":[{"artifactType":`) && !strings.HasPrefix(string(b), `{"artifacts":[{"digest":`) {
		t.Errorf("bundle.json keys are not sorted: %.80s", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "docker/registry/v2/repositories/docker.io/library/nginx/_uploads")); !os.IsNotExist(err) {
		t.Errorf("sealed store still has upload scratch directories (%v)", err)
	}
}

func TestStoreReproducible(t *testing.T) {
	f := newFixture(t)
	priv, _ := newKey(t)
	a, b := t.TempDir(), t.TempDir()
	n := len(f.adds())
	forward := make([]int, n)
	backward := make([]int, n)
	for i := range n {
		forward[i], backward[i] = i, n-1-i
	}
	writeStore(t, f, a, priv, forward)
	writeStore(t, f, b, priv, backward)
	c := writeConcurrently(t, f, priv)
	sa := treeSums(t, a)
	for name, other := range map[string]string{"backwards": b, "concurrently": c} {
		so := treeSums(t, other)
		for p, s := range sa {
			if so[p] != s {
				t.Errorf("%s: %s written in order, %q written %s", p, s, so[p], name)
			}
		}
		for p := range so {
			if _, ok := sa[p]; !ok {
				t.Errorf("%s is only in the store written %s", p, name)
			}
		}
	}
	// Times too, so that an ISO mastered from either is the same.
	fi, err := os.Stat(filepath.Join(b, airgap.IndexFile))
	must(t, err)
	if !fi.ModTime().Equal(epoch) {
		t.Errorf("bundle.json mtime = %v, want %v", fi.ModTime(), epoch)
	}
}

func TestStoreRejects(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	notEmpty := t.TempDir()
	write(t, notEmpty, "x", nil)
	if _, err := airgap.Create(ctx, airgap.StoreConfig{Dir: notEmpty}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("Create(non-empty dir) = %v, want a 'not empty' error", err)
	}
	s, err := airgap.Create(ctx, airgap.StoreConfig{Dir: t.TempDir()})
	must(t, err)
	img := f.images["nginx:1.27"]
	gz := f.os
	gz.Format = airgap.FormatRawGzip
	for _, tc := range []struct {
		name string
		add  func() error
		want string
	}{
		{"bad image name", func() error { return s.AddImage(ctx, "Not A Name", img) }, `image name "Not A Name"`},
		{"pinned digest mismatch", func() error {
			return s.AddImage(ctx, "nginx@sha256:"+strings.Repeat("0", 64), img)
		}, "not the sha256:0000"},
		{"format mismatch", func() error { return s.AddOSImage(ctx, gz) }, "is raw+zstd by its content, not raw+gz"},
		{"unknown format", func() error {
			o := f.os
			o.Format = "vmdk"
			return s.AddOSImage(ctx, o)
		}, `format "vmdk"`},
		{"bad netboot type", func() error {
			n := f.netboot
			n.Type = "grub"
			return s.AddNetboot(ctx, n)
		}, `type "grub"`},
		{"corrupt zstd", func() error {
			bad := write(t, t.TempDir(), "bad.zst", append([]byte{0x28, 0xb5, 0x2f, 0xfd}, bytes.Repeat([]byte{0xff}, 4000)...))
			return s.AddOSImage(ctx, airgap.OSImage{Name: "broken", Path: bad})
		}, "reading it as raw+zstd"},
		{"missing file", func() error { return s.AddFile(ctx, airgap.File{Name: "gone", Path: "/nonexistent/gone"}) }, "no such file"},
		{"bad artifact name", func() error { return s.AddFile(ctx, airgap.File{Name: "Bad Name", Path: f.file.Path}) }, `artifact name "Bad Name"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.add()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("add = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	must(t, s.AddImage(ctx, "nginx:1.27", img))
	if err := s.AddImage(ctx, "docker.io/library/nginx:1.27", img); err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Errorf("adding the same name twice = %v, want an 'already holds' error", err)
	}
	if _, err := s.Seal(ctx, nil); err == nil {
		t.Error("Seal(nil key) succeeded, want an error")
	}
}

func TestStoreOSFormats(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	raw := bytes.Repeat([]byte("disk"), 5000)
	var gz bytes.Buffer
	gw := gzip.NewWriter(&gz)
	_, err := gw.Write(raw)
	must(t, err)
	must(t, gw.Close())
	var xzb bytes.Buffer
	xw, err := xz.NewWriter(&xzb)
	must(t, err)
	_, err = xw.Write(raw)
	must(t, err)
	must(t, xw.Close())
	qcow := make([]byte, 512)
	copy(qcow, []byte{'Q', 'F', 'I', 0xfb})
	binary.BigEndian.PutUint64(qcow[24:], 10<<30)
	rawSum := sha256.Sum256(raw)

	s, err := airgap.Create(ctx, airgap.StoreConfig{Dir: t.TempDir(), Created: epoch})
	must(t, err)
	for _, in := range []struct {
		name    string
		content []byte
		format  airgap.OSFormat // empty means detect it
	}{
		{"raw", raw, airgap.FormatRaw},
		{"gz", gz.Bytes(), ""},
		{"xz", xzb.Bytes(), airgap.FormatRawXz},
		{"qcow", qcow, ""},
	} {
		must(t, s.AddOSImage(ctx, airgap.OSImage{Name: in.name, Path: write(t, dir, in.name, in.content), Format: in.format}))
	}
	ix, err := s.Seal(ctx, newKeyOnly(t))
	must(t, err)
	got := map[string]*airgap.OSInfo{}
	for _, a := range ix.Artifacts {
		got[a.Name] = a.OS
	}
	for _, tc := range []struct {
		name     string
		want     airgap.OSFormat
		wantSize int64
		wantSum  bool
	}{
		{"raw", airgap.FormatRaw, int64(len(raw)), true},
		{"gz", airgap.FormatRawGzip, int64(len(raw)), true},
		{"xz", airgap.FormatRawXz, int64(len(raw)), true},
		{"qcow", airgap.FormatQcow2, 10 << 30, false},
	} {
		info := got[tc.name]
		if info == nil {
			t.Errorf("%s: no OS info in bundle.json", tc.name)
			continue
		}
		wantSum := ""
		if tc.wantSum {
			wantSum = "sha256:" + hex.EncodeToString(rawSum[:])
		}
		if info.Format != tc.want || info.UncompressedSize != tc.wantSize || info.UncompressedDigest.String() != wantSum {
			t.Errorf("%s: OS info %+v, want %s, %d bytes, %q", tc.name, info, tc.want, tc.wantSize, wantSum)
		}
	}
}

func newKeyOnly(t testing.TB) ed25519.PrivateKey {
	k, _ := newKey(t)
	return k
}

// TestStoreLinkFrom writes the fixture twice, the second time hard-linking every blob from the
// first store, as a build does from its cache: the trees are the same, the blobs share inodes,
// and a file of the wrong size is copied around, not linked.
func TestStoreLinkFrom(t *testing.T) {
	f := newFixture(t)
	key, pub := newKey(t)
	first := t.TempDir()
	writeStore(t, f, first, key, nil)
	blobs := map[string]string{}
	root := filepath.Join(first, "docker", "registry", "v2", "blobs", "sha256")
	must(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "data" {
			blobs["sha256:"+filepath.Base(filepath.Dir(p))] = p
		}
		return err
	}))
	wrong := write(t, t.TempDir(), "wrong", []byte("not the blob"))
	var victim string
	for d := range blobs {
		victim = d
		break
	}
	ctx := context.Background()
	second := t.TempDir()
	s, err := airgap.Create(ctx, airgap.StoreConfig{Dir: second, Created: epoch, LinkFrom: func(d digest.Digest) (string, bool) {
		if d.String() == victim {
			return wrong, true
		}
		p, ok := blobs[d.String()]
		return p, ok
	}})
	must(t, err)
	for _, add := range f.adds() {
		must(t, add(ctx, s))
	}
	_, err = s.Seal(ctx, key)
	must(t, err)

	a, b := treeSums(t, first), treeSums(t, second)
	for p, h := range a {
		if b[p] != h {
			t.Errorf("%s differs between a copied and a linked store", p)
		}
	}
	if len(a) != len(b) {
		t.Errorf("stores hold %d and %d files", len(a), len(b))
	}
	linked := 0
	for d, p := range blobs {
		fa, _ := os.Stat(p)
		fb, err := os.Stat(filepath.Join(second, strings.TrimPrefix(p, first)))
		must(t, err)
		switch same := os.SameFile(fa, fb); {
		case d == victim && same:
			t.Errorf("blob %s was linked from a file of the wrong size", d)
		case d != victim && same:
			linked++
		}
	}
	if linked == 0 {
		t.Error("no blob was hard-linked")
	}
	if _, err := airgap.Verify(ctx, second, pub); err != nil {
		t.Fatal(err)
	}
}
