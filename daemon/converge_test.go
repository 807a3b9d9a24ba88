package daemon

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/daemon/watch"
)

// notes records sd_notify lines.
type notes struct {
	mu    sync.Mutex
	lines []string
}

func (n *notes) add(s string) {
	n.mu.Lock()
	n.lines = append(n.lines, s)
	n.mu.Unlock()
}

func (n *notes) has(prefix string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, l := range n.lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// save writes a file the way editors do: a temporary file beside it, renamed over it.
func save(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp~"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func copySite(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "site")
	err := filepath.WalkDir("../examples/site", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("../examples/site", p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestConvergerKeepsLastGoodSite edits a running site: a good edit applies, a broken one is
// published with its position and changes nothing, and fixing it applies again.
func TestConvergerKeepsLastGoodSite(t *testing.T) {
	dir := copySite(t)
	st := state.NewMemory(0)
	var n notes
	w, err := watch.New(watch.Config{Dir: dir, Quiet: 100 * time.Millisecond, Resync: -1})
	if err != nil {
		t.Fatal(err)
	}
	c := newConverger(w, st, slog.New(slog.DiscardHandler), n.add)
	reload := make(chan os.Signal, 1)
	c.reload = reload
	ctx, cancel := context.WithCancel(context.Background())
	c.start(ctx)
	done := make(chan error, 1)
	go func() { done <- runServices(ctx, named{"watch", w}, named{"converge", c}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	hosts := func() []state.Host {
		var hs []state.Host
		_ = st.View(ctx, func(tx state.Tx) (err error) { hs, err = tx.Hosts(); return err })
		return hs
	}
	if got := len(hosts()); got != 3 || c.Current().Site == nil {
		t.Fatalf("after start: %d hosts, site %v", got, c.Current().Site)
	}
	if !n.has("STATUS=site rack1 generation 1; 3 hosts (3 pending)") {
		t.Errorf("STATUS lines: %q", n.lines)
	}

	// A good edit: a fourth host. Edits are saved atomically, as editors and git do: a file
	// written in two steps may be read half-written, and is then (rightly) rejected first.
	save(t, filepath.Join(dir, "hosts", "web-03.toml"), "mac = \"52:54:00:20:00:13\"\nroles = [\"web\"]\n")
	eventually(t, "the fourth host", func() bool { return len(hosts()) == 4 })

	// A broken edit changes nothing and is published with its position.
	save(t, filepath.Join(dir, "hosts", "web-03.toml"), "mac = \"52:54:00:20:00:13\"\nroles = [\"web\"]\ncolour = \"red\"\n")
	eventually(t, "the load error", func() bool { return strings.Contains(c.Current().LoadError, "hosts/web-03.toml:3:1: colour") })
	if len(hosts()) != 4 || c.Current().Site == nil || len(c.Current().Site.Hosts) != 4 {
		t.Error("a broken edit changed the applied site")
	}
	if !n.has("STATUS=site rack1 generation 2; 4 hosts (4 pending); last edit rejected: hosts/web-03.toml:3:1") {
		t.Errorf("STATUS lines: %q", n.lines)
	}
	var g state.Generation
	_ = st.View(ctx, func(tx state.Tx) (err error) { g, err = tx.Generation(); return err })
	if g.Applied != 2 || g.Attempted != 3 || !strings.Contains(g.Error, "colour") {
		t.Errorf("generation after a broken edit = %+v", g)
	}

	// Removing the host again (the fix) applies.
	if err := os.Remove(filepath.Join(dir, "hosts", "web-03.toml")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the fix to apply", func() bool { return len(hosts()) == 3 && c.Current().LoadError == "" })

	// systemctl reload: RELOADING=1, a load, READY=1.
	reload <- os.Interrupt
	eventually(t, "RELOADING and READY", func() bool { return n.has("RELOADING=1\nMONOTONIC_USEC=") && n.has("READY=1") })
	if !c.alive(5 * time.Second) {
		t.Error("the loop does not report itself alive")
	}
}
