package build

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/build/buildtest"
)

// stuckWriter is an output nobody reads: every Write blocks until the test ends.
type stuckWriter struct{ end chan struct{} }

func newStuckWriter(t *testing.T) stuckWriter {
	w := stuckWriter{end: make(chan struct{})}
	t.Cleanup(func() { close(w.end) })
	return w
}

func (w stuckWriter) Write(p []byte) (int, error) {
	<-w.end
	return len(p), nil
}

func devNull(t *testing.T) *os.File {
	t.Helper()
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// runWithin runs a build, failing the test rather than hanging when it takes longer than d.
func runWithin(t *testing.T, ctx context.Context, d time.Duration, o Options) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, o)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("the build did not end within %s", d)
		return nil
	}
}

// TestProgressNeverHoldsUpTheBuild builds with bars and lines written where nobody looks.
// The bars once waited for a total that the bytes counted for an image do not reach (a shared
// layer is fetched once), so that a build with bars never ended.
func TestProgressNeverHoldsUpTheBuild(t *testing.T) {
	for _, tc := range []struct {
		name     string
		out      func(t *testing.T) io.Writer
		terminal bool
	}{
		{"bars to /dev/null", func(t *testing.T) io.Writer { return devNull(t) }, true},
		{"bars to a writer that never returns", func(t *testing.T) io.Writer { return newStuckWriter(t) }, true},
		{"lines to a writer that never returns", func(t *testing.T) io.Writer { return newStuckWriter(t) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "store")
			o := Options{Config: buildtest.Build(t, ""), Output: out, CacheDir: t.TempDir(), Created: time.Unix(1700000000, 0),
				Progress: tc.out(t), Terminal: tc.terminal}
			if err := runWithin(t, context.Background(), 60*time.Second, o); err != nil {
				t.Fatalf("Run() = %v", err)
			}
			if _, err := os.Stat(filepath.Join(out, "bundle.json")); err != nil {
				t.Errorf("no store: %v", err)
			}
		})
	}
}

// TestCancelWithBarsLeavesNothing cancels a build with bars in the middle of a download. One
// artifact at a time: the images are fetched, and their bars done, when the stalled download
// begins.
func TestCancelWithBarsLeavesNothing(t *testing.T) {
	stalled, started := buildtest.StalledFile(t)
	parent := t.TempDir()
	out := filepath.Join(parent, "store")
	o := Options{Config: buildtest.Build(t, stalled), Output: out, CacheDir: t.TempDir(), Created: time.Unix(1700000000, 0),
		Progress: devNull(t), Terminal: true, Jobs: 1}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cancelled time.Time
	go func() {
		<-started
		cancelled = time.Now()
		cancel()
	}()
	if err := runWithin(t, ctx, 60*time.Second, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run() = %v, want context.Canceled", err)
	}
	if d := time.Since(cancelled); d > 2*time.Second {
		t.Errorf("Run() returned %s after the cancel, want within 2s", d)
	}
	if got := leftovers(t, parent, ""); len(got) != 0 {
		t.Errorf("a cancelled build left %v beside its output", got)
	}
}

// waitWithin calls p.wait, failing the test rather than hanging when it takes longer than d,
// and returns how long it took.
func waitWithin(t *testing.T, p progress, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	done := make(chan struct{})
	go func() {
		p.wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("wait() did not return within %s", d)
	}
	return time.Since(start)
}

func TestProgressWaitIsBounded(t *testing.T) {
	t.Run("a bar left running", func(t *testing.T) {
		p := newProgress(context.Background(), io.Discard, true).(*barProgress)
		p.grace = 200 * time.Millisecond
		p.track("never finished", 100).add(10)
		if d := waitWithin(t, p, 10*time.Second); d > 2*time.Second {
			t.Errorf("wait() took %s with a bar left running, want about %s", d, p.grace)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		p := newProgress(ctx, io.Discard, true).(*barProgress)
		p.grace = time.Minute // the cancel, not the grace, must end it
		p.track("interrupted", 100).add(10)
		cancel()
		if d := waitWithin(t, p, 10*time.Second); d > 2*time.Second {
			t.Errorf("wait() took %s after the cancel", d)
		}
		p.track("after the cancel", 5).finish(nil) // no panic, no block
	})
}

func TestBarsShowWhatWasFetched(t *testing.T) {
	var out syncBuffer
	p := newProgress(context.Background(), &out, true)
	a := p.track("image a", 64<<10) // a planned size the counted bytes do not reach
	a.add(1 << 10)
	a.finish(nil)
	b := p.track("file b", -1)
	b.set(512, 2048)
	b.finish(errors.New("no such file"))
	waitWithin(t, p, 10*time.Second)
	got := out.String()
	for _, want := range []string{"image a", "1.0 KiB / 1.0 KiB", "done", "file b"} {
		if !strings.Contains(got, want) {
			t.Errorf("bars lack %q:\n%q", want, got)
		}
	}
}

func TestDetachedWriter(t *testing.T) {
	t.Run("in order", func(t *testing.T) {
		var out syncBuffer
		w := newDetachedWriter(&out, 1<<20)
		var want strings.Builder
		for i := range 1000 {
			line := strings.Repeat(string(rune('a'+i%26)), i%50) + "\n"
			want.WriteString(line)
			if n, err := w.Write([]byte(line)); n != len(line) || err != nil {
				t.Fatalf("Write() = %d, %v", n, err)
			}
		}
		w.close(10 * time.Second)
		if got := out.String(); got != want.String() {
			t.Errorf("wrote %d bytes, want the %d written, in order", len(got), want.Len())
		}
		if n, _ := w.Write([]byte("late")); n != 4 || strings.Contains(out.String(), "late") {
			t.Error("a write after close reached the output")
		}
	})
	t.Run("stuck", func(t *testing.T) {
		w := newDetachedWriter(newStuckWriter(t), 1<<10)
		start := time.Now()
		for range 1000 {
			_, _ = w.Write(make([]byte, 100))
		}
		w.close(100 * time.Millisecond)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("writing to a stuck output and closing took %s", d)
		}
		w.mu.Lock()
		pending := len(w.pending)
		w.mu.Unlock()
		if pending > 1<<10 {
			t.Errorf("%d bytes wait for a stuck output, want at most the 1 KiB backlog", pending)
		}
	})
}

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
