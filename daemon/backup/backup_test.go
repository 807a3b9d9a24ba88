package backup_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/cairn-appliance/cairn/airgap/airgaptest"
	"github.com/cairn-appliance/cairn/daemon/backup"
	"github.com/cairn-appliance/cairn/daemon/plan"
	"github.com/cairn-appliance/cairn/daemon/reconcile"
	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/daemon/watch"
	"github.com/cairn-appliance/cairn/site"
)

// appliance is the data of a test appliance: a state with hosts, events and two generations,
// the example site (edited once) and an upper store.
func appliance(t *testing.T) backup.Target {
	t.Helper()
	dir := t.TempDir()
	tg := backup.Target{State: filepath.Join(dir, "state.db"), Site: filepath.Join(dir, "site"), Store: filepath.Join(dir, "store")}
	if err := os.CopyFS(tg.Site, os.DirFS("../../examples/site")); err != nil {
		t.Fatal(err)
	}
	airgaptest.SealedStore(t, tg.Store, "example.com/extra:1")
	// A blob as large as a small image layer, that does not compress: the archive spans many
	// zstd blocks, as a real one does.
	blob := make([]byte, 1<<20)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(blob)
	sum := fmt.Sprintf("%x", sha256.Sum256(blob))
	p := filepath.Join(tg.Store, "docker", "registry", "v2", "blobs", "sha256", sum[:2], sum, "data")
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, blob, 0o644))
	st, err := state.Open(tg.State, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	apply(t, st, tg.Site, 1)
	edit(t, tg.Site, "web-01", "u-edited")
	apply(t, st, tg.Site, 2)
	err = st.Update(context.Background(), func(tx state.Tx) error {
		h, _, err := tx.Host("web-01")
		if err != nil {
			return err
		}
		h.HostTokenHash, h.Phase = "sha256:0123", state.Provisioned
		if err := tx.PutHost(h); err != nil {
			return err
		}
		for i := range 5 {
			if err := tx.Append(state.Event{Host: "web-01", Kind: "host.phase", Message: fmt.Sprintf("step %d", i)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

// apply applies the site in dir to st as generation gen, as the daemon does.
func apply(t *testing.T, st state.Store, dir string, gen int64) {
	t.Helper()
	s, err := site.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	w, err := watch.New(watch.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reconcile.Apply(context.Background(), st, s, gen, w.Fingerprint()); err != nil {
		t.Fatal(err)
	}
}

// edit saves host's file with another unit label, atomically as an editor does.
func edit(t testing.TB, dir, host, unit string) {
	p := filepath.Join(dir, "hosts", host+".toml")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "unit = ") {
			lines[i] = fmt.Sprintf("unit = %q", unit)
		}
	}
	tmp := filepath.Join(dir, "hosts", "."+host+".toml.swp")
	if err := os.WriteFile(tmp, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

// archive backs up tg from its files.
func archive(t *testing.T, tg backup.Target) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := backup.FromFiles(context.Background(), &buf, tg, "test"); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestBackupIsReproducible(t *testing.T) {
	tg := appliance(t)
	a := archive(t, tg)
	// Other times and modes on the files change nothing: the headers do not carry them.
	late := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	_ = filepath.WalkDir(filepath.Dir(tg.State), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Base(p) != "state.db" {
			err = errors.Join(os.Chtimes(p, late, late), os.Chmod(p, 0o640))
		}
		return err
	})
	b := archive(t, tg)
	if !bytes.Equal(a, b) {
		t.Fatalf("two backups of the same state differ: %d and %d bytes", len(a), len(b))
	}
	m, err := backup.Verify(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	if m.Format != backup.FormatVersion || m.Cairn != "test" || m.State.Hosts != 3 || m.State.Generation.Applied != 2 || !m.SiteMatches() {
		t.Errorf("manifest = %+v", m)
	}
	if m.Files(backup.SiteDir) != 7 || m.Blobs() < 3 {
		t.Errorf("the manifest lists %d site files and %d blobs, want 7 and at least 3", m.Files(backup.SiteDir), m.Blobs())
	}
	// Every header is normalised, entries are sorted, the manifest comes last.
	var names []string
	tr := tar.NewReader(decompress(t, a))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if !h.ModTime.Equal(time.Unix(0, 0)) || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || h.Format != tar.FormatPAX && h.Format != tar.FormatUSTAR {
			t.Errorf("header of %s not normalised: %+v", h.Name, h)
		}
		want := int64(0o644)
		switch {
		case h.Typeflag == tar.TypeDir:
			want = 0o755
		case h.Name == backup.StateFile:
			want = 0o600
		}
		if h.Mode != want {
			t.Errorf("%s: mode %o, want %o", h.Name, h.Mode, want)
		}
	}
	if names[len(names)-1] != backup.ManifestFile {
		t.Errorf("the last entry is %s, want %s", names[len(names)-1], backup.ManifestFile)
	}
	for i := 1; i < len(names)-1; i++ {
		if names[i-1] >= names[i] {
			t.Errorf("entries out of order: %s before %s", names[i-1], names[i])
		}
	}
}

func TestBackupRestoreRoundTrip(t *testing.T) {
	src := appliance(t)
	a := archive(t, src)
	dst := fresh(t)
	res, err := backup.Restore(context.Background(), bytes.NewReader(a), dst, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Summary.Hosts != 3 || res.Summary.Generation.Applied != 2 || res.Summary.Events == 0 {
		t.Errorf("restored %+v", res.Summary)
	}
	sameState(t, src.State, dst.State)
	sameTree(t, src.Site, dst.Site)
	sameTree(t, src.Store, dst.Store)
	// Nothing is left beside the destination but what was restored.
	if entries, _ := os.ReadDir(filepath.Dir(dst.State)); len(entries) != 3 {
		t.Errorf("the destination holds %v, want state.db, site and store", entries)
	}
	// A backup of the restored appliance is the same archive.
	if b := archive(t, dst); !bytes.Equal(a, b) {
		t.Error("a backup of the restored appliance differs from the one restored")
	}
	// The restored site plans no change against the restored state.
	planNothing(t, dst)
}

// fresh is a new appliance's data directory, empty.
func fresh(t *testing.T) backup.Target {
	dir := filepath.Join(t.TempDir(), "data")
	return backup.Target{State: filepath.Join(dir, "state.db"), Site: filepath.Join(dir, "site"), Store: filepath.Join(dir, "store")}
}

// sameState checks that two state files hold the same hosts, events and generation.
func sameState(t *testing.T, a, b string) {
	t.Helper()
	ha, ea, ga := readState(t, a)
	hb, eb, gb := readState(t, b)
	if !reflect.DeepEqual(ha, hb) {
		t.Errorf("hosts differ:\n%+v\n%+v", ha, hb)
	}
	if !reflect.DeepEqual(ea, eb) {
		t.Errorf("events differ:\n%+v\n%+v", ea, eb)
	}
	if !reflect.DeepEqual(ga, gb) {
		t.Errorf("generations differ: %+v, %+v", ga, gb)
	}
}

func readState(t *testing.T, path string) (hosts []state.Host, events []state.Event, g state.Generation) {
	t.Helper()
	st, err := state.Open(path, state.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	err = st.View(context.Background(), func(tx state.Tx) (err error) {
		if hosts, err = tx.Hosts(); err != nil {
			return err
		}
		if events, err = tx.Events(0, 0); err != nil {
			return err
		}
		g, err = tx.Generation()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return hosts, events, g
}

// tree reads every file under dir: slash path → content.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			files[filepath.ToSlash(rel)+"/"] = ""
			return nil
		}
		b, err := os.ReadFile(p)
		files[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return files
}

func sameTree(t *testing.T, a, b string) {
	t.Helper()
	ta, tb := tree(t, a), tree(t, b)
	if len(ta) == 0 {
		t.Fatalf("%s is empty", a)
	}
	if !reflect.DeepEqual(ta, tb) {
		for p := range ta {
			if ta[p] != tb[p] {
				t.Errorf("%s differs from %s at %s", b, a, p)
			}
		}
		for p := range tb {
			if _, ok := ta[p]; !ok {
				t.Errorf("%s has %s, which %s has not", b, p, a)
			}
		}
	}
}

func TestBackupSiteSymlinks(t *testing.T) {
	tg := appliance(t)
	// A link inside the site is stored as what it leads to; hidden files are passed over.
	must(t, os.Symlink("index.html", filepath.Join(tg.Site, "files", "default.html")))
	must(t, os.MkdirAll(filepath.Join(tg.Site, ".git"), 0o755))
	must(t, os.WriteFile(filepath.Join(tg.Site, ".git", "HEAD"), []byte("ref: refs/heads/main\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(tg.Site, "hosts", "web-01.toml~"), []byte("backup"), 0o644))
	dst := fresh(t)
	if _, err := backup.Restore(context.Background(), bytes.NewReader(archive(t, tg)), dst, false); err != nil {
		t.Fatal(err)
	}
	info, err := os.Lstat(filepath.Join(dst.Site, "files", "default.html"))
	if err != nil || !info.Mode().IsRegular() {
		t.Errorf("the symlink inside the site: restored as %v, %v; want a regular file", info, err)
	}
	for _, p := range []string{".git", "hosts/web-01.toml~"} {
		if _, err := os.Lstat(filepath.Join(dst.Site, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s restored (%v); the site ignores it and so does a backup", p, err)
		}
	}

	for _, tt := range []struct{ name, target, want string }{
		{"outside.conf", filepath.Join(t.TempDir(), "x"), "site file files/outside.conf is a symlink leading outside the site directory"},
		{"dangling.conf", "nothing-here", `site file files/dangling.conf is a symlink to "nothing-here", which leads nowhere`},
		{"loop", "..", "site file files/loop is a symlink that loops back"},
	} {
		if tt.name == "outside.conf" {
			must(t, os.WriteFile(tt.target, []byte("x"), 0o644))
		}
		link := filepath.Join(tg.Site, "files", tt.name)
		must(t, os.Symlink(tt.target, link))
		_, err := backup.FromFiles(context.Background(), io.Discard, tg, "test")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("backup with %s: %v, want an error saying %q", tt.name, err, tt.want)
		}
		must(t, os.Remove(link))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func decompress(t *testing.T, a []byte) io.Reader {
	t.Helper()
	zr, err := zstd.NewReader(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(b)
}

// rewrite decompresses an archive, lets change alter each entry (drop it by returning false)
// and add entries before the manifest, and compresses it again.
func rewrite(t *testing.T, a []byte, change func(h *tar.Header, body []byte) ([]byte, bool), extra map[string]string) []byte {
	t.Helper()
	tr := tar.NewReader(decompress(t, a))
	var out bytes.Buffer
	zw, _ := zstd.NewWriter(&out)
	tw := tar.NewWriter(zw)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		body, err := io.ReadAll(tr)
		must(t, err)
		if h.Name == backup.ManifestFile {
			for name, content := range extra {
				must(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}))
				_, err := tw.Write([]byte(content))
				must(t, err)
			}
		}
		if change != nil {
			var keep bool
			if body, keep = change(h, body); !keep {
				continue
			}
		}
		h.Size = int64(len(body))
		must(t, tw.WriteHeader(h))
		_, err = tw.Write(body)
		must(t, err)
	}
	must(t, tw.Close())
	must(t, zw.Close())
	return out.Bytes()
}

// TestRestoreRefusesDamagedArchives: an archive that fails a check is refused with an error
// that names the entry, and the destination (here an appliance with data, restored over with
// force) is left as it was.
func TestRestoreRefusesDamagedArchives(t *testing.T) {
	src := appliance(t)
	a := archive(t, src)
	m, err := backup.Verify(bytes.NewReader(a))
	must(t, err)
	var blob backup.Entry
	for _, e := range m.Entries {
		if strings.HasSuffix(e.Path, "/data") && e.Size > blob.Size {
			blob = e
		}
	}
	if blob.Path == "" {
		t.Fatal("no blob in the archive")
	}
	flipped := bytes.Clone(a)
	flipped[len(flipped)/2] ^= 0x40

	for _, tt := range []struct {
		name    string
		archive []byte
		want    []string
	}{
		{"a flipped byte in a blob", rewrite(t, a, func(h *tar.Header, body []byte) ([]byte, bool) {
			if h.Name == blob.Path {
				body[len(body)/2] ^= 1
			}
			return body, true
		}, nil), []string{"entry " + blob.Path + ": sha256 ", "the manifest says " + blob.SHA256}},
		{"a flipped byte in the compressed archive", flipped, []string{"entry "}},
		{"a truncated archive", a[:len(a)*2/3], []string{"entry ", "truncated"}},
		{"an entry not in the manifest", rewrite(t, a, nil, map[string]string{"site/hosts/intruder.toml": "mac = \"52:54:00:00:00:66\"\n"}),
			[]string{"entry site/hosts/intruder.toml is not in the manifest"}},
		{"an entry missing", rewrite(t, a, func(h *tar.Header, body []byte) ([]byte, bool) { return body, h.Name != "site/hosts/mirror-01.toml" }, nil),
			[]string{"entry site/hosts/mirror-01.toml is in the manifest but not in the archive"}},
		{"an entry outside", rewrite(t, a, nil, map[string]string{"../evil": "x"}), []string{"entry ../evil"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dst := appliance(t)
			before := tree(t, filepath.Dir(dst.State))
			_, err := backup.Restore(context.Background(), bytes.NewReader(tt.archive), dst, true)
			if err == nil {
				t.Fatal("Restore = nil, want an error")
			}
			t.Log(err)
			if !errors.Is(err, backup.ErrDamaged) {
				t.Errorf("Restore = %v, want ErrDamaged", err)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Restore = %v, want it to say %q", err, want)
				}
			}
			if after := tree(t, filepath.Dir(dst.State)); !reflect.DeepEqual(before, after) {
				t.Errorf("the destination changed:\nbefore %d entries\nafter  %d entries", len(before), len(after))
			}
			if _, err := backup.Verify(bytes.NewReader(tt.archive)); !errors.Is(err, backup.ErrDamaged) {
				t.Errorf("Verify = %v, want ErrDamaged", err)
			}
		})
	}
}

func TestRestoreRefusesInUseAndData(t *testing.T) {
	src := appliance(t)
	a := archive(t, src)

	// The daemon holds the state file.
	dst := appliance(t)
	st, err := state.Open(dst.State, state.Options{})
	must(t, err)
	_, err = backup.Restore(context.Background(), bytes.NewReader(a), dst, true)
	if !errors.Is(err, backup.ErrInUse) || !strings.Contains(err.Error(), "systemctl stop cairn") {
		t.Errorf("Restore over a state in use = %v, want ErrInUse saying to stop the daemon", err)
	}
	must(t, st.Close())

	// A state file, or a site with files, is replaced only with force.
	_, err = backup.Restore(context.Background(), bytes.NewReader(a), dst, false)
	if !errors.Is(err, backup.ErrNotEmpty) || !strings.Contains(err.Error(), "--force") {
		t.Errorf("Restore over a state = %v, want ErrNotEmpty saying --force", err)
	}
	dst = fresh(t)
	must(t, os.MkdirAll(dst.Site, 0o755))
	must(t, os.WriteFile(filepath.Join(dst.Site, "site.toml"), []byte("[site]\n"), 0o644))
	_, err = backup.Restore(context.Background(), bytes.NewReader(a), dst, false)
	if !errors.Is(err, backup.ErrNotEmpty) {
		t.Errorf("Restore over a site = %v, want ErrNotEmpty", err)
	}
	// With force, the old site goes, the archive's comes.
	if _, err := backup.Restore(context.Background(), bytes.NewReader(a), dst, true); err != nil {
		t.Fatal(err)
	}
	sameTree(t, src.Site, dst.Site)

	// An archive with an upper store needs an upper to restore to.
	dst = fresh(t)
	dst.Store = ""
	if _, err := backup.Restore(context.Background(), bytes.NewReader(a), dst, false); err == nil || !strings.Contains(err.Error(), "sets no upper") {
		t.Errorf("Restore of a store with no upper = %v, want an error saying to set upper", err)
	}
	if _, err := os.Stat(dst.State); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused restore left %s: %v", dst.State, err)
	}
}

// TestBackupWithoutStore: an appliance with no upper store (missing or empty) backs up and
// restores as well.
func TestBackupWithoutStore(t *testing.T) {
	src := appliance(t)
	must(t, os.RemoveAll(src.Store))
	a := archive(t, src)
	m, err := backup.Verify(bytes.NewReader(a))
	must(t, err)
	if n := m.Files(backup.StoreDir); n != 0 {
		t.Errorf("%d store files in the archive of no store", n)
	}
	dst := fresh(t)
	if _, err := backup.Restore(context.Background(), bytes.NewReader(a), dst, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dst.Store); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("restoring no store made %s (%v)", dst.Store, err)
	}
	must(t, os.MkdirAll(src.Store, 0o755))
	dst = fresh(t)
	if _, err := backup.Restore(context.Background(), bytes.NewReader(archive(t, src)), dst, false); err != nil {
		t.Fatal(err)
	}
	if entries, err := os.ReadDir(dst.Store); err != nil || len(entries) != 0 {
		t.Errorf("restoring an empty store: %v, %v", entries, err)
	}
}

// planNothing checks that the site restored loads and plans no change against the state
// restored beside it.
func planNothing(t *testing.T, tg backup.Target) {
	t.Helper()
	s, err := site.Load(tg.Site)
	if err != nil {
		t.Fatalf("the restored site does not load: %v", err)
	}
	hosts, _, _ := readState(t, tg.State)
	p, err := plan.Compute(s, hosts)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Empty() {
		var b strings.Builder
		_ = p.Print(&b)
		t.Errorf("the restored site plans changes against the restored state:\n%s", b.String())
	}
}
