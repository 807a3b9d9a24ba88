package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-appliance/cairn/airgap/airgaptest"
	"github.com/cairn-appliance/cairn/daemon/api"
	"github.com/cairn-appliance/cairn/daemon/reconcile"
	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/daemon/watch"
	"github.com/cairn-appliance/cairn/site"
)

// dataDir writes a daemon.toml whose state, site and upper store are under a new directory
// (listening where no daemon answers) and returns its path and the directory.
func dataDir(t *testing.T) (config, dir string) {
	t.Helper()
	dir = t.TempDir()
	config = filepath.Join(dir, "daemon.toml")
	err := os.WriteFile(config, []byte(fmt.Sprintf("listen = \"127.0.0.1:1\"\nstore = \"/medium/store\"\nstate = %q\nsite_dir = %q\nupper = %q\n",
		filepath.Join(dir, "state.db"), filepath.Join(dir, "site"), filepath.Join(dir, "store"))), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return config, dir
}

// applianceData fills a data directory as a daemon would have: the example site applied, an
// upper store.
func applianceData(t *testing.T, dir string) {
	t.Helper()
	siteDir := filepath.Join(dir, "site")
	if err := os.CopyFS(siteDir, os.DirFS("../../examples/site")); err != nil {
		t.Fatal(err)
	}
	airgaptest.SealedStore(t, filepath.Join(dir, "store"), "example.com/extra:1")
	st, err := state.Open(filepath.Join(dir, "state.db"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := site.Load(siteDir)
	if err != nil {
		t.Fatal(err)
	}
	w, err := watch.New(watch.Config{Dir: siteDir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reconcile.Apply(context.Background(), st, s, 1, w.Fingerprint()); err != nil {
		t.Fatal(err)
	}
}

func TestApplianceBackupRestore(t *testing.T) {
	srcConfig, src := dataDir(t)
	applianceData(t, src)
	out := filepath.Join(t.TempDir(), "backup.tar.zst")

	// No daemon answers at the configuration's listen address: the files are read.
	code, stdout, stderr := cairn(t, "appliance", "backup", out, "--config", srcConfig)
	if code != exitOK {
		t.Fatalf("backup: exit %d: %s", code, stderr)
	}
	for _, want := range []string{out + ": ", " bytes, sha256 ", "from the files: no daemon answers at http://127.0.0.1:1",
		"state: generation 1, 3 hosts", "site: 7 files", "upper store: "} {
		if !strings.Contains(stdout, want) {
			t.Errorf("backup says %q, want %q in it", stdout, want)
		}
	}
	archive, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := os.Stat(out); info.Mode().Perm() != 0o600 {
		t.Errorf("the archive has mode %v, want 0600", info.Mode().Perm())
	}
	// To stdout, the same bytes; what is said goes to stderr.
	code, stdout, stderr = cairn(t, "appliance", "backup", "-", "--config", srcConfig)
	if code != exitOK || stdout != string(archive) || !strings.Contains(stderr, "-: ") {
		t.Errorf("backup to stdout: exit %d, %d bytes (want the %d of the file), stderr %q", code, len(stdout), len(archive), stderr)
	}

	dstConfig, dst := dataDir(t)
	code, stdout, stderr = cairn(t, "appliance", "restore", out, "--config", dstConfig)
	if code != exitOK {
		t.Fatalf("restore: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"restored " + out, "generation 1 (1 attempted), 3 hosts", "site " + filepath.Join(dst, "site") + ": 7 files",
		"upper store " + filepath.Join(dst, "store"), "systemctl start cairn"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("restore says %q, want %q in it", stdout, want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dst, "site", "hosts", "web-01.toml")); err != nil || !bytes.Contains(b, []byte("52:54:00:20:00:11")) {
		t.Errorf("the restored site: %q, %v", b, err)
	}
	// Again: the destination holds data now.
	if code, _, stderr := cairn(t, "appliance", "restore", out, "--config", dstConfig); code != exitFailed || !strings.Contains(stderr, "give --force") {
		t.Errorf("restore over data: exit %d: %s", code, stderr)
	}
	// A damaged archive is refused whatever --force says.
	damaged := filepath.Join(t.TempDir(), "damaged.tar.zst")
	if err := os.WriteFile(damaged, archive[:len(archive)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := cairn(t, "appliance", "restore", damaged, "--config", dstConfig, "--force"); code != exitFailed ||
		!strings.Contains(stderr, "the archive fails its checks") || !strings.Contains(stderr, "truncated") {
		t.Errorf("restore of a damaged archive: exit %d: %s", code, stderr)
	}
	// A backup that cannot be written leaves nothing at FILE.
	if code, _, _ := cairn(t, "appliance", "backup", damaged, "--config", filepath.Join(t.TempDir(), "missing.toml")); code != exitFailed {
		t.Errorf("backup with a missing --config: exit %d", code)
	}
	if b, _ := os.ReadFile(damaged); len(b) != len(archive)/2 {
		t.Errorf("a failed backup changed %s", damaged)
	}
}

// TestApplianceBackupFromDaemon: while a daemon answers, the archive comes from its API, and is
// checked as it is written; an address given with --server is not second-guessed.
func TestApplianceBackupFromDaemon(t *testing.T) {
	srcConfig, src := dataDir(t)
	applianceData(t, src)
	code, archive, stderr := cairn(t, "appliance", "backup", "-", "--config", srcConfig)
	if code != exitOK {
		t.Fatalf("backup: exit %d: %s", code, stderr)
	}
	serve := func(body string) string {
		h, err := api.New(api.Config{Store: state.NewMemory(0), Current: func() api.Current { return api.Current{} },
			Backup: func(context.Context) (api.Archive, error) { return served(body), nil }})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return srv.URL
	}
	out := filepath.Join(t.TempDir(), "backup.tar.zst")
	url := serve(archive)
	code, stdout, stderr := cairn(t, "appliance", "backup", out, "--config", srcConfig, "--server", url)
	if code != exitOK || !strings.Contains(stdout, "from the daemon at "+url) {
		t.Fatalf("backup from the daemon: exit %d: %s%s", code, stdout, stderr)
	}
	if b, _ := os.ReadFile(out); string(b) != archive {
		t.Error("the archive from the daemon is not what it served")
	}
	// An archive cut short on the way is refused, and FILE keeps what it held.
	code, _, stderr = cairn(t, "appliance", "backup", out, "--config", srcConfig, "--server", serve(archive[:len(archive)-100]))
	if code != exitFailed || !strings.Contains(stderr, "the archive fails its checks") {
		t.Errorf("backup of a cut archive: exit %d: %s", code, stderr)
	}
	if b, _ := os.ReadFile(out); string(b) != archive {
		t.Error("a failed backup changed the file")
	}
	if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 1 {
		t.Errorf("a failed backup left %v", entries)
	}
	// --server says where the daemon is: when it does not answer there, no files are read.
	if code, _, stderr := cairn(t, "appliance", "backup", "-", "--config", srcConfig, "--server", "http://127.0.0.1:1"); code != exitFailed ||
		!strings.Contains(stderr, "is cairn daemon running") {
		t.Errorf("backup with --server and no daemon: exit %d: %s", code, stderr)
	}
}

// served is an api.Archive of fixed bytes.
type served string

func (s served) Write(_ context.Context, w io.Writer) error {
	_, err := io.WriteString(w, string(s))
	return err
}

func (served) Close() error { return nil }
