package build

import (
	"fmt"
	"io"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// progress shows a build as it goes: one bar per artifact with bytes, rate and ETA on a
// terminal, one plain line per finished artifact otherwise (CI logs).
type progress interface {
	// track starts reporting on one artifact of total bytes (-1: unknown).
	track(label string, total int64) tracker
	// wait waits for the display to finish drawing.
	wait()
}

type tracker interface {
	add(n int64)
	set(done, total int64)
	finish(err error)
}

func newProgress(w io.Writer, terminal bool) progress {
	if terminal {
		return &barProgress{p: mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))}
	}
	return &lineProgress{w: w}
}

// barProgress draws mpb bars.
type barProgress struct{ p *mpb.Progress }

func (b *barProgress) track(label string, total int64) tracker {
	bar := b.p.New(max(total, 0), mpb.BarStyle(),
		mpb.PrependDecorators(decor.Name(label, decor.WCSyncSpaceR), decor.Counters(decor.SizeB1024(0), "% .1f / % .1f", decor.WCSyncSpace)),
		mpb.AppendDecorators(decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace), decor.OnComplete(decor.AverageETA(decor.ET_STYLE_GO), "done")),
	)
	return &barTracker{bar: bar, start: time.Now()}
}

func (b *barProgress) wait() { b.p.Wait() }

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
	t.bar.SetTotal(-1, true)
}

// lineProgress prints one line per finished artifact.
type lineProgress struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineProgress) track(label string, total int64) tracker {
	return &lineTracker{p: l, label: label, total: total, start: time.Now()}
}

func (l *lineProgress) wait() {}

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
