package backup_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/airgap/airgaptest"
	"github.com/cairn-appliance/cairn/daemon"
	"github.com/cairn-appliance/cairn/daemon/api"
	"github.com/cairn-appliance/cairn/daemon/backup"
	"github.com/cairn-appliance/cairn/daemon/watch"
)

// quiet is a daemon.Notifier with no service manager behind it.
type quiet struct{}

func (quiet) Notify(string) (bool, error)     { return false, nil }
func (quiet) WatchdogInterval() time.Duration { return 0 }

// logBuffer keeps the daemon's log.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startDaemon runs the real daemon on cfg, logging into log, and returns its address once it
// is ready.
func startDaemon(t *testing.T, cfg daemon.Config, log io.Writer) (addr string, stop func() error) {
	t.Helper()
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- daemon.Run(ctx, cfg, daemon.Options{Stdout: pw, Notifier: quiet{}, Version: "test", Log: slog.New(slog.NewTextHandler(log, nil))})
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if !strings.HasPrefix(line, daemon.ReadyPrefix+" registry=") {
		cancel()
		t.Fatalf("no ready line (%q, %v): %v", line, err, <-done)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	var once sync.Once
	stop = func() error {
		once.Do(cancel)
		return <-done
	}
	t.Cleanup(func() { once.Do(cancel) })
	return strings.TrimPrefix(strings.Fields(line)[2], "registry="), stop
}

// editor keeps saving host files of the site, atomically as an editor does, with pauses of
// up to 150 ms, until ctx ends; it returns how many edits it made.
func editor(ctx context.Context, dir string) (edits int, err error) {
	hosts := []string{"web-01", "web-02", "mirror-01"}
	for ; ctx.Err() == nil; edits++ {
		host := hosts[edits%len(hosts)]
		p := filepath.Join(dir, "hosts", host+".toml")
		b, err := os.ReadFile(p)
		if err != nil {
			return edits, err
		}
		lines := strings.Split(string(b), "\n")
		for i, l := range lines {
			if strings.HasPrefix(l, "unit = ") {
				lines[i] = fmt.Sprintf("unit = \"u-%d\"", edits)
			}
		}
		tmp := filepath.Join(dir, "hosts", "."+host+".toml.swp")
		if err := os.WriteFile(tmp, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
			return edits, err
		}
		if err := os.Rename(tmp, p); err != nil {
			return edits, err
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(rand.IntN(150)) * time.Millisecond):
		}
	}
	return edits, nil
}

// TestBackupWhileDaemonApplies takes backups through the running daemon's API while a site
// editor keeps the daemon applying edits, restores each into a new appliance, and checks that
// what was restored is a consistent pair: the site plans no change against the state (a
// restored daemon re-does nothing), the state's applied fingerprint is the site's, and its
// events are the source's as far as they go.
func TestBackupWhileDaemonApplies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon for a few seconds; without -short it runs")
	}
	dir := t.TempDir()
	medium := filepath.Join(dir, "medium")
	data := filepath.Join(dir, "data")
	seed, err := filepath.Abs("../../examples/site")
	must(t, err)
	airgaptest.SiteStore(t, medium, seed, "example.com/app:1")
	cfg := daemon.Config{Store: medium, Site: seed, Listen: "127.0.0.1:0", SiteDir: filepath.Join(data, "site"),
		State: filepath.Join(data, "state.db"), Upper: filepath.Join(data, "store"), DataDir: data}
	airgaptest.SealedStore(t, cfg.Upper, "example.com/extra:1")
	var log logBuffer
	addr, stop := startDaemon(t, cfg, &log)
	c, err := api.NewClient("http://"+addr, nil)
	must(t, err)

	ctx, stopEdits := context.WithCancel(context.Background())
	type result struct {
		edits int
		err   error
	}
	edited := make(chan result, 1)
	go func() {
		n, err := editor(ctx, cfg.SiteDir)
		edited <- result{n, err}
	}()
	var archives [][]byte
	for range 6 {
		var buf bytes.Buffer
		if _, err := c.Backup(context.Background(), &buf); err != nil {
			stopEdits()
			t.Fatalf("backup through the API: %v", err)
		}
		archives = append(archives, buf.Bytes())
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
	}
	stopEdits()
	r := <-edited
	must(t, r.err)
	if err := stop(); err != nil {
		t.Fatalf("daemon: %v", err)
	}
	_, final, _ := readState(t, cfg.State)

	gens := map[int64]bool{}
	for i, a := range archives {
		dst := fresh(t)
		res, err := backup.Restore(context.Background(), bytes.NewReader(a), dst, false)
		if err != nil {
			t.Fatalf("restoring backup %d: %v", i, err)
		}
		if !res.Manifest.SiteMatches() {
			t.Errorf("backup %d: the site is not the one the state last loaded", i)
		}
		planNothing(t, dst)
		_, events, g := readState(t, dst.State)
		gens[g.Applied] = true
		w, err := watch.New(watch.Config{Dir: dst.Site})
		must(t, err)
		if fp := w.Fingerprint(); g.AppliedFingerprint != fp || g.Attempted != g.Applied {
			t.Errorf("backup %d: generation %d (%d attempted) applied fingerprint %s, the restored site's is %s", i, g.Applied, g.Attempted, g.AppliedFingerprint, fp)
		}
		if len(events) == 0 || len(events) > len(final) {
			t.Fatalf("backup %d: %d events, the source ended with %d", i, len(events), len(final))
		}
		for j, e := range events {
			f := final[j]
			if e.Seq != f.Seq || e.Kind != f.Kind || e.Message != f.Message || e.Host != f.Host {
				t.Errorf("backup %d: event %d is %+v, the source's is %+v", i, j, e, f)
				break
			}
		}
		sameTree(t, cfg.Upper, dst.Store)
	}
	t.Logf("%d edits during %d backups, which waited %d times for an edit to be loaded; generations restored: %v",
		r.edits, len(archives), strings.Count(log.String(), "taking it again after the next load"), gens)
	if len(gens) < 2 {
		t.Errorf("every backup holds the same generation (%v): the daemon was not applying edits meanwhile", gens)
	}
}
