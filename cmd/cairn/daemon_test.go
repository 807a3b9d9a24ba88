package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/airgap"
)

func TestDaemonBadInput(t *testing.T) {
	dir := t.TempDir()
	bogus := filepath.Join(dir, "daemon.toml")
	if err := os.WriteFile(bogus, []byte("listne = \":5000\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"daemon", "--listen", ""}, exitUsage, "--listen is empty"},
		{[]string{"daemon", "extra"}, exitUsage, "unknown command"},
		{[]string{"daemon", "--config", filepath.Join(dir, "missing.toml")}, exitFailed, "missing.toml"},
		{[]string{"daemon", "--config", bogus}, exitFailed, "listne"},
		{[]string{"daemon", "--config", bogus + ".none", "--store", "/nonexistent/store"}, exitFailed, ".none"},
	} {
		code, _, stderr := cairn(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("cairn %s = exit %d, stderr %q; want exit %d and %q", strings.Join(tc.args, " "), code, stderr, tc.code, tc.want)
		}
	}
}

// syncBuffer lets the test read what the daemon has printed so far.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestDaemonServesAndStops(t *testing.T) {
	ctx := context.Background()
	store := filepath.Join(t.TempDir(), "store")
	st, err := airgap.Create(ctx, airgap.StoreConfig{Dir: store})
	if err != nil {
		t.Fatal(err)
	}
	payload := filepath.Join(t.TempDir(), "motd")
	if err := os.WriteFile(payload, []byte("hello from the medium\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := st.AddFile(ctx, airgap.File{Name: "motd", Path: payload}); err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(nil)
	if _, err := st.Seal(ctx, key); err != nil {
		t.Fatal(err)
	}
	// Its site and state in the test's directory, never this machine's /var/lib/cairn, and no
	// DHCP or TFTP.
	var0 := t.TempDir()
	cfg := filepath.Join(var0, "daemon.toml")
	conf := fmt.Sprintf("listen = \"127.0.0.1:0\"\nstore = %q\nsite_dir = %q\nstate = %q\ndata_dir = %q\npxe = false\n",
		store, filepath.Join(var0, "site"), filepath.Join(var0, "state.db"), var0)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"daemon", "--config", cfg}, &out, &errOut) }()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "cairn: READY registry=127.0.0.1:") {
		select {
		case code := <-done:
			t.Fatalf("cairn daemon exited %d before it was ready; stderr %q", code, errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ready line within 20s; stdout %q, stderr %q", out.String(), errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("cairn daemon after its context ended = exit %d, want 0; stderr %q", code, errOut.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("cairn daemon did not stop within 15s of its context ending")
	}
}
