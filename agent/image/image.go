// Package image writes an OS image onto a disk or into a file: the step of provisioning that
// streams the image from the appliance's registry (decision 8). The netboot agent (package
// agent/netboot) calls it in provision mode, and `cairn-agent image write` by hand.
//
// Write fetches the blob over HTTP(S) and, when the connection drops or stalls, resumes it
// with a Range request from the last byte received, a bounded number of times with a doubling
// delay. It decompresses the stream as it arrives (raw, raw+zstd, raw+gz, raw+xz; qcow2 is
// refused, since cairn build converts it to raw+zstd) and hashes both the blob (when its
// digest is given) and what lands on the disk. Memory stays bounded whatever the image's
// size: a fixed set of 4 MiB buffers and a zstd decoder whose window is capped (MaxWindow).
//
// Runs of zero blocks (64 KiB or more) are not written: a regular file (emptied first, its
// size kept, since a disk image file stays the size of its disk) gets holes, and grows to the
// image's size by ftruncate; a block device gets them zeroed with BLKZEROOUT in large ranges,
// so that it reads back as the image. Data goes out in large aligned writes, with O_DIRECT
// where the target takes it, and the target is synced at the end; then the kernel is asked
// to re-read a device's partition table. A device smaller than the image is refused before
// anything is written, as is a device in use (it is opened exclusively).
//
// The first Options.HoldHead bytes of the image (the partition table and the boot code) are
// zeroed on the target first and kept in memory; they are written last, and only once the
// image's digest has checked out. A cut, a failed check or a crash leaves a disk that does
// not boot rather than a disk that boots a half-written system.
//
// Write does not partition the rest of the disk, move a GPT backup header to the disk's end
// or write the configdrive: those are steps of their own. It imports no registry or build
// code and says nothing unless Options.Log or Options.Progress are set.
package image

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-appliance/cairn/agent/api"
)

// Source is the image to write: one blob served over HTTP(S).
type Source struct {
	// URL fetches the blob; the server should answer Range requests, or a dropped connection
	// cannot be resumed once data is written.
	URL string
	// Name names the image in messages, e.g. "debian-13" (the artifact's name).
	Name string
	// Format is the blob's encoding; "" detects it from the first bytes (the zstd, gzip and
	// xz magic numbers, else raw). qcow2 is refused.
	Format api.ImageFormat
	// Size is the blob's size as served, 0 when unknown.
	Size int64
	// Digest is the sha256:... of the blob as served; optional.
	Digest string
	// UncompressedDigest is the sha256:... of what lands on the disk. It is required, unless
	// the format is raw and Digest is given, which is then the same.
	UncompressedDigest string
	// UncompressedSize is the size of what lands on the disk, 0 when unknown (then there is
	// no ETA and no check that the device is large enough before writing).
	UncompressedSize int64
}

// SourceOf is the Source of a provisioning plan's image.
func SourceOf(img api.Image) Source {
	return Source{URL: img.URL, Name: img.Artifact, Format: img.Format, Size: img.Size, Digest: img.Digest,
		UncompressedDigest: img.UncompressedDigest, UncompressedSize: img.UncompressedSize}
}

// Progress says how far a Write is.
type Progress struct {
	Written     int64 // bytes of the image handled so far (written, held or skipped as zero)
	Total       int64 // Source.UncompressedSize, 0 when unknown
	BytesPerSec float64
	ETA         time.Duration // 0 when Total is unknown
	Elapsed     time.Duration
	Resumes     int
}

// Options tune Write; the zero value is usable.
type Options struct {
	// Client fetches the blob; nil means a client that fails a connection in 10 s and a
	// response that has not started in 30 s, and has no overall timeout (images are big).
	Client *http.Client
	// Header holds extra request headers (e.g. Authorization).
	Header http.Header
	// Tries bounds the attempts after a connection drops, stalls or fails, before Write gives
	// up (default 10). Attempts that make progress start the count again.
	Tries int
	// Backoff is the delay before the first retry (default 1 s); it doubles with each failed
	// attempt in a row, up to 30 s.
	Backoff time.Duration
	// Stall is how long a connection may deliver nothing before it is dropped and resumed
	// (default 30 s).
	Stall time.Duration
	// Progress, when set, is called every ProgressEvery (default 3 s) and once at the end, from
	// a goroutine of Write's, never twice at once.
	Progress      func(Progress)
	ProgressEvery time.Duration
	// HoldHead is how many bytes at the start of the image (rounded up to 4 KiB) are zeroed
	// on the target first and written only after the image's digest checks out; 0 writes the
	// image in order. 1 MiB covers the partition table and the boot code.
	HoldHead int64
	// MaxWindow caps the zstd window the decoder accepts (default 64 MiB), which bounds its
	// memory; an image compressed with a larger window (zstd --long=27 and above) is refused.
	MaxWindow int64
	// Log, when set, hears of retries, resumes and restarts.
	Log func(format string, args ...any)
}

// Result says what a successful Write did.
type Result struct {
	Written int64  // bytes of the image, the size of what is on the target now
	Digest  string // sha256:... of what was written, checked
	Zero    int64  // bytes not written because zero (holes in a file, BLKZEROOUT on a device)
	Resumes int    // Range requests that continued a dropped download
	Elapsed time.Duration
}

// DigestError says that a digest did not check out. When it is returned, the HoldHead region
// of the target has been left zero.
type DigestError struct {
	Name string // the image's name
	Want string // sha256:... expected
	Got  string // sha256:... computed
	// Blob is true when the digest is the blob's as served (Source.Digest), false when it is
	// of what was written (Source.UncompressedDigest).
	Blob bool
	// Held is how many bytes at the start of the target were left zero (Options.HoldHead).
	Held int64
}

func (e *DigestError) Error() string {
	what := "the data written"
	if e.Blob {
		what = "the blob as served"
	}
	msg := fmt.Sprintf("image %s: %s has digest %s, want %s: the download is corrupt or the server serves another image",
		e.Name, what, e.Got, e.Want)
	if e.Held > 0 {
		msg += fmt.Sprintf("; the first %d bytes of the target were left zero, so it does not boot", e.Held)
	}
	return msg
}

// Defaults.
const (
	defaultTries         = 10
	defaultBackoff       = time.Second
	maxBackoff           = 30 * time.Second
	defaultStall         = 30 * time.Second
	defaultProgressEvery = 3 * time.Second
	defaultMaxWindow     = api.MaxZstdWindow
)

// errStartOver says that the server answered a resume with the whole blob.
var errStartOver = errors.New("the server does not answer Range requests")

// Write writes the image src onto target, a block device or a regular file (created when
// missing, emptied otherwise but not shrunk), and returns what it did once the image's digest checks out
// and the target is synced. A digest that does not check out returns a *DigestError.
func Write(ctx context.Context, src Source, target string, opts Options) (Result, error) {
	start := time.Now()
	if src.Name == "" {
		src.Name = redact(src.URL)
	}
	if err := src.check(); err != nil {
		return Result{}, err
	}
	opts = opts.withDefaults()

	t, err := openTarget(target)
	if err != nil {
		return Result{}, err
	}
	defer t.close()
	if t.dev && src.UncompressedSize > t.size {
		return Result{}, fmt.Errorf("device %s is %d bytes (%s), too small for image %s of %d bytes (%s): choose a larger disk",
			target, t.size, SizeIEC(t.size), src.Name, src.UncompressedSize, SizeIEC(src.UncompressedSize))
	}

	w := &writer{src: src, opts: opts, t: t, start: start}
	stop := w.report()
	var res Result
	for {
		res, err = w.run(ctx)
		if !errors.Is(err, errStartOver) {
			break
		}
		if t.touched || w.pastHead || w.restarts >= opts.Tries {
			err = w.startOverError(target)
			break
		}
		w.restarts++
		w.logf("image %s: %s does not answer Range requests; nothing is written yet, so starting over", src.Name, redact(src.URL))
		w.written.Store(0)
	}
	stop()
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("writing image %s to %s: stopped after %d bytes: %w", src.Name, target, w.written.Load(), err)
	}
	if err != nil {
		return Result{}, err
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

func (w *writer) startOverError(target string) error {
	left := "the target holds part of the image"
	if w.opts.HoldHead > 0 {
		left += fmt.Sprintf(" and its first %d bytes are zero, so it does not boot", w.opts.HoldHead)
	}
	return fmt.Errorf("writing image %s to %s: the download from %s was cut after %d bytes of the blob and the server answered "+
		"the resume with the whole blob (200, not 206): it does not answer Range requests; %s; try again, or serve the image "+
		"from a server that answers Range requests (cairn's registry does): %w", w.src.Name, target, redact(w.src.URL), w.blobOff, left, errStartOver)
}

// check refuses a source that cannot be written or verified, before anything is fetched.
func (s Source) check() error {
	u, err := url.Parse(s.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("image %s: URL %q is not an http:// or https:// URL", s.Name, s.URL)
	}
	switch s.Format {
	case "", api.FormatRaw, api.FormatRawZstd, api.FormatRawGzip, api.FormatRawXz:
	case api.FormatQcow2:
		return errQcow2(s.Name)
	default:
		return fmt.Errorf("image %s: unknown format %q: want raw, raw+zstd, raw+gz or raw+xz (or none, to detect it)", s.Name, s.Format)
	}
	for _, d := range []struct{ what, v string }{{"digest", s.Digest}, {"uncompressed digest", s.UncompressedDigest}} {
		if d.v != "" && !validDigest(d.v) {
			return fmt.Errorf("image %s: %s %q is not sha256: followed by 64 hex digits", s.Name, d.what, d.v)
		}
	}
	if s.Size < 0 || s.UncompressedSize < 0 {
		return fmt.Errorf("image %s: negative size", s.Name)
	}
	return nil
}

func errQcow2(name string) error {
	return fmt.Errorf("image %s is qcow2, which the agent does not write: cairn build converts qcow2 images to raw+zstd; "+
		"build the bundle again, or convert it yourself (qemu-img convert -O raw, then zstd)", name)
}

func validDigest(d string) bool {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != 64 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}

func (o Options) withDefaults() Options {
	if o.Client == nil {
		o.Client = defaultClient()
	}
	if o.Tries <= 0 {
		o.Tries = defaultTries
	}
	if o.Backoff <= 0 {
		o.Backoff = defaultBackoff
	}
	if o.Stall <= 0 {
		o.Stall = defaultStall
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = defaultProgressEvery
	}
	if o.MaxWindow <= 0 {
		o.MaxWindow = defaultMaxWindow
	}
	if o.HoldHead < 0 {
		o.HoldHead = 0
	}
	o.HoldHead = (o.HoldHead + align - 1) &^ (align - 1)
	return o
}

// writer is one Write: what persists across a start over.
type writer struct {
	src      Source
	opts     Options
	t        *target
	start    time.Time
	prepared bool
	pastHead bool // the last run handed the target data beyond the held head
	restarts int
	blobOff  int64 // bytes of the blob received by the last run

	written atomic.Int64 // bytes of the image handled, for Progress
	resumes atomic.Int64
}

func (w *writer) logf(format string, args ...any) {
	if w.opts.Log != nil {
		w.opts.Log(format, args...)
	}
}

// report calls Options.Progress every ProgressEvery until the returned stop, which calls it
// once more.
func (w *writer) report() (stop func()) {
	if w.opts.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(w.opts.ProgressEvery)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				w.opts.Progress(w.progress())
			case <-done:
				return
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
		w.opts.Progress(w.progress())
	}
}

func (w *writer) progress() Progress {
	p := Progress{Written: w.written.Load(), Total: w.src.UncompressedSize, Elapsed: time.Since(w.start), Resumes: int(w.resumes.Load())}
	if s := p.Elapsed.Seconds(); s > 0 {
		p.BytesPerSec = float64(p.Written) / s
	}
	if p.Total > p.Written && p.BytesPerSec > 0 {
		p.ETA = time.Duration(float64(p.Total-p.Written) / p.BytesPerSec * float64(time.Second)).Round(time.Second)
	}
	return p
}

func digestOf(sum []byte) string { return "sha256:" + hex.EncodeToString(sum) }

// sizeIEC is n in binary units: "2.0 GiB".
func SizeIEC(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// redact drops a URL's user information, which may hold a password.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return u.Redacted()
}
