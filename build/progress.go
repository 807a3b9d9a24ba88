package build

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// IsTerminal reports whether w is a terminal, where progress bars make sense. Being a
// character device is not enough: /dev/null is one.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progress shows a build as it goes: one bar per artifact with bytes, rate and ETA on a
// terminal, one plain line per finished artifact otherwise (CI logs).
//
// Nothing it does may hold up the build: it writes through a detachedWriter, so a stalled
// output costs frames, not progress; its bars end when their artifact does, whatever the bytes
// counted; and wait returns within progressGrace even if the display does not.
type progress interface {
	// track starts reporting on one artifact of total bytes (-1: unknown).
	track(label string, total int64) tracker
	// wait lets the display draw its last state, and stops it.
	wait()
}

type tracker interface {
	add(n int64)
	set(done, total int64)
	finish(err error)
}

const (
	// progressGrace bounds how long wait gives the display to finish drawing.
	progressGrace = 2 * time.Second
	// progressBacklog is how much output waits for a slow writer before more is dropped.
	progressBacklog = 256 << 10
	barWidth        = 40
)

// newProgress starts a display on w that stops drawing when ctx ends.
func newProgress(ctx context.Context, w io.Writer, terminal bool) progress {
	out := newDetachedWriter(w, progressBacklog)
	if !terminal {
		return &lineProgress{w: out, grace: progressGrace}
	}
	// mpb sees only the detachedWriter, not the terminal behind it: it is told to redraw, and
	// how wide the lines are.
	width := 80
	if f, ok := w.(*os.File); ok {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			width = cols
		}
	}
	p := mpb.NewWithContext(ctx, mpb.WithOutput(out), mpb.WithAutoRefresh(), mpb.WithWidth(width),
		mpb.WithRefreshRate(150*time.Millisecond))
	return &barProgress{p: p, out: out, grace: progressGrace}
}

// barProgress draws mpb bars.
type barProgress struct {
	p     *mpb.Progress
	out   *detachedWriter
	grace time.Duration
}

func (b *barProgress) track(label string, total int64) tracker {
	// The bar is made without a total so that only finish completes it: the bytes counted for
	// an artifact need not add up to its planned size (a layer that another image shares is
	// fetched once; manifests and configs are not counted), and mpb waits for every bar that
	// has a total to reach it.
	bar, err := b.p.Add(0, mpb.BarStyle().Build(), mpb.BarWidth(barWidth),
		mpb.PrependDecorators(decor.Name(label, decor.WCSyncSpaceR), decor.Counters(decor.SizeB1024(0), "% .1f / % .1f", decor.WCSyncSpace)),
		mpb.AppendDecorators(decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace), decor.OnComplete(decor.AverageETA(decor.ET_STYLE_GO), "done")),
	)
	if err != nil { // the display has stopped: the build was cancelled
		return nopTracker{}
	}
	if total > 0 {
		bar.SetTotal(total, false)
	}
	return &barTracker{bar: bar, start: time.Now()}
}

func (b *barProgress) wait() {
	done := make(chan struct{})
	go func() {
		b.p.Wait()
		close(done)
	}()
	t := time.NewTimer(b.grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		// A bar left running must not hold up the build.
		go b.p.Shutdown()
	}
	b.out.close(b.grace)
}

type barTracker struct {
	bar   *mpb.Bar
	start time.Time
}

func (t *barTracker) add(n int64) { t.bar.EwmaIncrInt64(n, time.Since(t.start)) }

func (t *barTracker) set(done, total int64) {
	if total > 0 {
		t.bar.SetTotal(total, false)
	}
	t.bar.SetCurrent(done)
}

func (t *barTracker) finish(err error) {
	if err != nil {
		t.bar.Abort(false)
		return
	}
	t.bar.SetTotal(-1, true) // what was counted is the total, and the bar is complete
}

// lineProgress prints one line per finished artifact.
type lineProgress struct {
	mu    sync.Mutex
	w     *detachedWriter
	grace time.Duration
}

func (l *lineProgress) track(label string, total int64) tracker {
	return &lineTracker{p: l, label: label, total: total, start: time.Now()}
}

func (l *lineProgress) wait() { l.w.close(l.grace) }

type lineTracker struct {
	p           *lineProgress
	label       string
	mu          sync.Mutex
	done, total int64
	start       time.Time
}

func (t *lineTracker) add(n int64) {
	t.mu.Lock()
	t.done += n
	t.mu.Unlock()
}

func (t *lineTracker) set(done, total int64) {
	t.mu.Lock()
	t.done, t.total = done, max(total, t.total)
	t.mu.Unlock()
}

func (t *lineTracker) finish(err error) {
	t.mu.Lock()
	done := t.done
	t.mu.Unlock()
	t.p.mu.Lock()
	defer t.p.mu.Unlock()
	elapsed := time.Since(t.start).Round(10 * time.Millisecond)
	if err != nil {
		fmt.Fprintf(t.p.w, "failed  %s after %s: %v\n", t.label, elapsed, err)
		return
	}
	fmt.Fprintf(t.p.w, "done    %s  %s fetched in %s\n", t.label, FormatBytes(done), elapsed)
}

// detachedWriter hands what is written to w from a goroutine of its own, so that a w that
// blocks (a pipe nobody reads, a terminal paused with ^S) never holds up the writer. While w is
// stuck, writes beyond backlog bytes are dropped: a display may lose frames, a build nothing.
// After w fails, everything is dropped.
type detachedWriter struct {
	w       io.Writer
	backlog int
	wake    chan struct{} // one pending wake-up for run
	done    chan struct{} // closed when run returns

	mu      sync.Mutex
	pending []byte
	closed  bool
}

func newDetachedWriter(w io.Writer, backlog int) *detachedWriter {
	d := &detachedWriter{w: w, backlog: backlog, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go d.run()
	return d
}

// Write never blocks, and never fails.
func (d *detachedWriter) Write(p []byte) (int, error) {
	d.mu.Lock()
	if !d.closed && len(d.pending)+len(p) <= d.backlog {
		d.pending = append(d.pending, p...)
		d.signal()
	}
	d.mu.Unlock()
	return len(p), nil
}

func (d *detachedWriter) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *detachedWriter) run() {
	defer close(d.done)
	var buf []byte
	for {
		d.mu.Lock()
		buf, d.pending = d.pending, buf[:0]
		closed := d.closed
		d.mu.Unlock()
		if len(buf) > 0 {
			if _, err := d.w.Write(buf); err != nil {
				d.mu.Lock()
				d.closed, d.pending = true, nil
				d.mu.Unlock()
				return
			}
			continue
		}
		if closed {
			return
		}
		<-d.wake
	}
}

// close drops what is written from now on, and waits up to grace for what was written before
// to reach w.
func (d *detachedWriter) close(grace time.Duration) {
	d.mu.Lock()
	d.closed = true
	d.signal()
	d.mu.Unlock()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-d.done:
	case <-t.C:
	}
}

// Images whose layer reads are counted, for progress.

type countedImage struct {
	v1.Image
	add func(int64)
}

func (i countedImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := i.Image.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	return countedLayer{Layer: l, add: i.add}, nil
}

func (i countedImage) Layers() ([]v1.Layer, error) {
	ls, err := i.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for j, l := range ls {
		out[j] = countedLayer{Layer: l, add: i.add}
	}
	return out, nil
}

type countedLayer struct {
	v1.Layer
	add func(int64)
}

func (l countedLayer) Compressed() (io.ReadCloser, error) {
	rc, err := l.Layer.Compressed()
	if err != nil {
		return nil, err
	}
	return &countingReader{ReadCloser: rc, add: l.add}, nil
}

// index is v1.ImageIndex under another name, so that countedIndex can embed it and still
// define an ImageIndex method.
type index = v1.ImageIndex

type countedIndex struct {
	index
	add func(int64)
}

func (x countedIndex) Image(h v1.Hash) (v1.Image, error) {
	img, err := x.index.Image(h)
	if err != nil {
		return nil, err
	}
	return countedImage{Image: img, add: x.add}, nil
}

func (x countedIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	idx, err := x.index.ImageIndex(h)
	if err != nil {
		return nil, err
	}
	return countedIndex{index: idx, add: x.add}, nil
}

type countingReader struct {
	io.ReadCloser
	add func(int64)
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.add(int64(n))
	return n, err
}
