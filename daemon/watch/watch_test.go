package watch

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// harness runs a Watcher on a site directory and counts what it reports.
type harness struct {
	t    *testing.T
	site string
	w    *Watcher
}

func start(t *testing.T, site string) *harness {
	t.Helper()
	w, err := New(Config{Dir: site, Quiet: 150 * time.Millisecond, MaxWait: 2 * time.Second, Resync: -1})
	if err != nil {
		t.Fatal(err)
	}
	// The baseline, as the daemon takes it: anything that changes from here on is reported,
	// whether or not Run has its watches in place yet.
	w.Fingerprint()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run() = %v, want context.Canceled", err)
		}
	})
	return &harness{t: t, site: site, w: w}
}

// expect waits for exactly n changes: n within a few seconds, then none for a while. It
// returns the last.
func (h *harness) expect(n int, what string) (last Change) {
	h.t.Helper()
	for i := range n {
		select {
		case c := <-h.w.C:
			if c.Reason == "" {
				h.t.Errorf("%s: change without a reason", what)
			}
			last = c
		case <-time.After(5 * time.Second):
			h.t.Fatalf("%s: got %d reloads, want %d", what, i, n)
		}
	}
	select {
	case c := <-h.w.C:
		h.t.Fatalf("%s: an extra reload (%s), want exactly %d", what, c.Reason, n)
	case <-time.After(800 * time.Millisecond):
	}
	return last
}

// files checks that a change lists exactly want as changed files.
func files(t *testing.T, what string, c Change, want ...string) {
	t.Helper()
	if !slices.Equal(c.Files, want) {
		t.Errorf("%s: the change lists files %q, want %q", what, c.Files, want)
	}
}

func write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func newSite(t *testing.T) string {
	t.Helper()
	site := filepath.Join(t.TempDir(), "site")
	write(t, filepath.Join(site, "site.toml"), "[site]\nname = \"a\"\n")
	write(t, filepath.Join(site, "hosts", "a.toml"), "mac = \"52:54:00:00:00:01\"\n")
	return site
}

func TestEditorAtomicSave(t *testing.T) {
	site := newSite(t)
	h := start(t, site)
	a := filepath.Join(site, "hosts", "a.toml")
	// What vim does with backupcopy=no: probe, rename the original aside, write anew, drop the
	// backup; plus its swap file, which comes and goes.
	write(t, filepath.Join(site, "hosts", ".a.toml.swp"), "swap")
	write(t, filepath.Join(site, "hosts", "4913"), "")
	must(t, os.Remove(filepath.Join(site, "hosts", "4913")))
	must(t, os.Rename(a, a+"~"))
	write(t, a, "mac = \"52:54:00:00:00:02\"\n")
	must(t, os.Remove(a+"~"))
	must(t, os.Remove(filepath.Join(site, "hosts", ".a.toml.swp")))
	files(t, "vim-style save", h.expect(1, "vim-style save"), "hosts/a.toml")

	// A plain write in place, as most tools do.
	write(t, a, "mac = \"52:54:00:00:00:03\"\n")
	files(t, "write in place", h.expect(1, "write in place"), "hosts/a.toml")
}

// TestNoChangeNoReload: a file written again with the same bytes, its times touched, and
// anything under .git are no change. First a real change shows that the watcher sees edits;
// then the non-changes must give no reload; then one more real change must be reported alone.
func TestNoChangeNoReload(t *testing.T) {
	site := newSite(t)
	h := start(t, site)
	write(t, filepath.Join(site, "hosts", "b.toml"), "mac = \"52:54:00:00:00:02\"\n")
	files(t, "a new host", h.expect(1, "a new host"), "hosts/b.toml")

	a := filepath.Join(site, "hosts", "a.toml")
	b, err := os.ReadFile(a)
	must(t, err)
	write(t, a, string(b)) // same bytes
	now := time.Now().Add(time.Minute)
	must(t, os.Chtimes(a, now, now))
	write(t, filepath.Join(site, ".git", "HEAD"), "ref: refs/heads/main\n")
	h.expect(0, "rewriting a file with the same content, touching it, writing in .git")

	write(t, filepath.Join(site, "hosts", "c.toml"), "x")
	files(t, "the next real change", h.expect(1, "the next real change"), "hosts/c.toml")
}

func TestGitCheckout(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git is not installed")
	}
	site := newSite(t)
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(git, args...)
		cmd.Dir = site
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	run("init", "-q", "-b", "main")
	run("add", ".")
	run("commit", "-qm", "one host")
	run("checkout", "-qb", "more")
	for _, n := range []string{"b", "c", "d"} {
		write(t, filepath.Join(site, "hosts", n+".toml"), "mac = \"52:54:00:00:00:0"+n+"\"\n")
	}
	must(t, os.Remove(filepath.Join(site, "hosts", "a.toml")))
	run("add", "-A")
	run("commit", "-qm", "three hosts")
	run("checkout", "-q", "main")
	h := start(t, site)
	run("checkout", "-q", "more")
	all := []string{"hosts/a.toml", "hosts/b.toml", "hosts/c.toml", "hosts/d.toml"}
	files(t, "git checkout", h.expect(1, "git checkout of another branch"), all...)
	run("checkout", "-q", "main")
	files(t, "git checkout back", h.expect(1, "git checkout back"), all...)
}

// TestDataSymlinkSwap follows the layout Kubernetes gives a projected volume: the visible
// entries are symlinks through ..data, which is swapped atomically to a new directory.
func TestDataSymlinkSwap(t *testing.T) {
	site := filepath.Join(t.TempDir(), "site")
	v1 := filepath.Join(site, "..v1")
	write(t, filepath.Join(v1, "site.toml"), "[site]\nname = \"a\"\n")
	write(t, filepath.Join(v1, "hosts", "a.toml"), "one")
	must(t, os.Symlink("..v1", filepath.Join(site, "..data")))
	must(t, os.Symlink("..data/site.toml", filepath.Join(site, "site.toml")))
	must(t, os.Symlink("..data/hosts", filepath.Join(site, "hosts")))
	h := start(t, site)

	v2 := filepath.Join(site, "..v2")
	write(t, filepath.Join(v2, "site.toml"), "[site]\nname = \"a\"\n")
	write(t, filepath.Join(v2, "hosts", "a.toml"), "two")
	must(t, os.Symlink("..v2", filepath.Join(site, "..data_tmp")))
	must(t, os.Rename(filepath.Join(site, "..data_tmp"), filepath.Join(site, "..data")))
	must(t, os.RemoveAll(v1))
	files(t, "..data swap", h.expect(1, "..data swap"), "hosts/a.toml") // site.toml reads the same

	// The new target is watched: an edit inside it is seen.
	write(t, filepath.Join(v2, "hosts", "b.toml"), "three")
	files(t, "edit after the swap", h.expect(1, "edit after the swap"), "hosts/b.toml")
}

func TestDirectoryRecreated(t *testing.T) {
	site := newSite(t)
	h := start(t, site)
	must(t, os.RemoveAll(site))
	write(t, filepath.Join(site, "site.toml"), "[site]\nname = \"b\"\n")
	write(t, filepath.Join(site, "hosts", "a.toml"), "mac = \"52:54:00:00:00:09\"\n")
	files(t, "recreated", h.expect(1, "directory removed and created again"), "hosts/a.toml", "site.toml")
	write(t, filepath.Join(site, "hosts", "b.toml"), "x")
	files(t, "edit in the new directory", h.expect(1, "edit in the new directory"), "hosts/b.toml")
	must(t, os.RemoveAll(filepath.Join(site, "hosts")))
	files(t, "hosts/ removed", h.expect(1, "hosts/ removed"), "hosts/a.toml", "hosts/b.toml")
}

func TestTriggerForcesReload(t *testing.T) {
	site := newSite(t)
	h := start(t, site)
	h.w.Trigger("SIGHUP")
	if c := h.expect(1, "forced reload"); !c.All || len(c.Files) != 0 {
		t.Errorf("a forced reload gave All %v, Files %q; want everything read again, no file changed", c.All, c.Files)
	}
}

func TestBurstIsOneReload(t *testing.T) {
	site := newSite(t)
	h := start(t, site)
	for i := range 50 {
		write(t, filepath.Join(site, "hosts", "h"+string(rune('a'+i%26))+".toml"), time.Now().String())
		time.Sleep(5 * time.Millisecond)
	}
	h.expect(1, "50 writes in a row")
}

// TestChangeBeforeRun covers the gap between loading a site and having the watches in place:
// a change there is reported as soon as Run starts.
func TestChangeBeforeRun(t *testing.T) {
	site := newSite(t)
	w, err := New(Config{Dir: site, Quiet: 100 * time.Millisecond, Resync: -1})
	if err != nil {
		t.Fatal(err)
	}
	w.Fingerprint() // what the daemon loads
	write(t, filepath.Join(site, "hosts", "b.toml"), "x")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = w.Run(ctx) }()
	h := &harness{t: t, site: site, w: w}
	h.expect(1, "a change made before Run started")
}

// TestWaitsForGit keeps a burst open while git holds its index lock, however long the
// pauses between its writes.
func TestWaitsForGit(t *testing.T) {
	site := newSite(t)
	lock := filepath.Join(site, ".git", "index.lock")
	write(t, lock, "")
	h := start(t, site)
	write(t, filepath.Join(site, "hosts", "b.toml"), "one")
	time.Sleep(400 * time.Millisecond) // longer than the quiet period
	select {
	case c := <-h.w.C:
		t.Fatalf("reloaded (%s) while git held its lock", c.Reason)
	default:
	}
	write(t, filepath.Join(site, "hosts", "c.toml"), "two")
	must(t, os.Remove(lock))
	h.expect(1, "the checkout, once git is done")
}

// TestBackupFilesIgnored: the files the site ignores (an editor's backup beside a site file,
// a swap file) are no change. First a real change shows that the watcher sees edits; then the
// ignored files must give no reload; then one more real change must be reported alone.
func TestBackupFilesIgnored(t *testing.T) {
	site := newSite(t)
	h := start(t, site)
	write(t, filepath.Join(site, "hosts", "b.toml"), "one")
	files(t, "a new host", h.expect(1, "a new host"), "hosts/b.toml")

	write(t, filepath.Join(site, "hosts", "a.toml~"), "old")
	write(t, filepath.Join(site, "hosts", ".b.toml.swp"), "swap")
	write(t, filepath.Join(site, "roles~", "web.toml"), "a backup of a directory")
	h.expect(0, "an editor's backup and swap files")

	write(t, filepath.Join(site, "hosts", "b.toml"), "two")
	files(t, "the next real change", h.expect(1, "the next real change"), "hosts/b.toml")
}

// TestDigestIsFingerprint checks that Digest of a site's files is the fingerprint the watcher
// takes of the directory, symlinks followed and hidden files passed over: what a backup
// compares its copy of the site with.
func TestDigestIsFingerprint(t *testing.T) {
	site := newSite(t)
	write(t, filepath.Join(site, "files", "a.conf"), "conf")
	write(t, filepath.Join(site, ".git", "HEAD"), "ref: refs/heads/main\n")
	must(t, os.Symlink("a.conf", filepath.Join(site, "files", "b.conf")))
	w, err := New(Config{Dir: site})
	must(t, err)
	files := map[string][]byte{
		"site.toml":    []byte("[site]\nname = \"a\"\n"),
		"hosts/a.toml": []byte("mac = \"52:54:00:00:00:01\"\n"),
		"files/a.conf": []byte("conf"),
		"files/b.conf": []byte("conf"),
	}
	if got, want := Digest(files), w.Fingerprint(); got != want {
		t.Errorf("Digest = %s, want the watcher's fingerprint %s", got, want)
	}
	files["files/b.conf"] = []byte("other")
	if got, want := Digest(files), w.Fingerprint(); got == want {
		t.Errorf("Digest of other content = the watcher's fingerprint %s", want)
	}
}
