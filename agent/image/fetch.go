package image

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// defaultClient has timeouts for each phase of a request but none overall: the body of an
// image takes minutes, and a stalled body is caught by the blob reader's own deadline.
func defaultClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true, // the blob's digest is over its bytes as served
		ForceAttemptHTTP2:     true,
	}}
}

// blobReader reads a blob over HTTP, resuming with a Range request from the last byte
// received when the connection drops or stalls. It hashes what it reads when hash is set.
type blobReader struct {
	ctx     context.Context
	src     Source
	opts    Options
	hash    hash.Hash // nil: no digest to check
	resumes *atomic.Int64

	size      int64 // the blob's size: Source.Size, or learned from the first answer; 0 unknown
	off       int64 // bytes received
	validator string
	body      io.ReadCloser
	cancel    context.CancelFunc
	timer     *time.Timer
	stalled   atomic.Bool
	dropped   error // why the last body ended early; the next Read waits and resumes
	fails     int   // attempts in a row without progress
	// startOver is set when the server answered a resume with the whole blob.
	startOver bool
	err       error // the error Read returned, other than io.EOF
	done      bool  // the whole blob is read
}

// retryable marks an error the next attempt may not meet.
type retryable struct{ err error }

func (r retryable) Error() string { return r.err.Error() }
func (r retryable) Unwrap() error { return r.err }

// Read reads the blob, and keeps the error that ended it (other than io.EOF) for err.
func (r *blobReader) Read(p []byte) (int, error) {
	n, err := r.read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		r.err = err
	}
	return n, err
}

func (r *blobReader) read(p []byte) (int, error) {
	if r.done {
		return 0, io.EOF
	}
	for {
		if r.body == nil {
			if r.dropped != nil {
				if err := r.wait(r.dropped); err != nil {
					return 0, err
				}
			}
			err := r.open()
			var re retryable
			if errors.As(err, &re) {
				r.dropped = re.err
				continue
			}
			if err != nil {
				return 0, err
			}
			r.dropped = nil
		}
		// The deadline runs only while waiting for the server, not while the disk is slow.
		r.timer.Reset(r.opts.Stall)
		n, err := r.body.Read(p)
		r.timer.Stop()
		if n > 0 {
			r.off += int64(n)
			r.fails = 0
			if r.hash != nil {
				r.hash.Write(p[:n])
			}
		}
		if err == nil {
			return n, nil
		}
		stalled := r.stalled.Load()
		r.closeBody()
		if r.size > 0 && r.off > r.size {
			return n, fmt.Errorf("fetching image %s from %s: the server sent more than the blob's %d bytes", r.src.Name, redact(r.src.URL), r.size)
		}
		if errors.Is(err, io.EOF) && (r.size == 0 || r.off == r.size) {
			r.done = true
			return n, io.EOF
		}
		if r.ctx.Err() != nil {
			return n, r.ctx.Err()
		}
		switch {
		case stalled:
			r.dropped = fmt.Errorf("no data for %s", r.opts.Stall)
		case errors.Is(err, io.EOF):
			r.dropped = errors.New("the connection closed early")
		default:
			r.dropped = err
		}
		if n > 0 {
			return n, nil
		}
	}
}

// wait counts a failed attempt and sleeps before the next, or gives up.
func (r *blobReader) wait(cause error) error {
	r.fails++
	if r.fails > r.opts.Tries {
		return fmt.Errorf("fetching image %s from %s: giving up after %d tries, at byte %d of %s: %w",
			r.src.Name, redact(r.src.URL), r.opts.Tries, r.off, sizeOrUnknown(r.size), cause)
	}
	d := r.opts.Backoff << (r.fails - 1)
	if d > maxBackoff || d <= 0 {
		d = maxBackoff
	}
	r.logf("image %s: %v at byte %d of %s; trying again in %s (try %d of %d)", r.src.Name, cause, r.off, sizeOrUnknown(r.size), d, r.fails, r.opts.Tries)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
}

// open sends the request for the rest of the blob and checks the answer's status and range.
func (r *blobReader) open() error {
	ctx, cancel := context.WithCancel(r.ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.src.URL, nil)
	if err != nil {
		cancel()
		return fmt.Errorf("fetching image %s: %w", r.src.Name, err)
	}
	for k, vs := range r.opts.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	// identity: a transport must not decompress what the digest is computed over.
	req.Header.Set("Accept-Encoding", "identity")
	if r.off > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(r.off, 10)+"-")
		if r.validator != "" {
			req.Header.Set("If-Range", r.validator)
		}
	}
	r.stalled.Store(false)
	// One deadline for the answer and then for each read: a connection that delivers nothing
	// for Stall is cancelled, and the next attempt resumes it.
	timer := time.AfterFunc(r.opts.Stall, func() {
		r.stalled.Store(true)
		cancel()
	})
	resp, err := r.opts.Client.Do(req)
	if err != nil {
		timer.Stop()
		cancel()
		if r.ctx.Err() != nil {
			return r.ctx.Err()
		}
		if r.stalled.Load() {
			return retryable{fmt.Errorf("no answer for %s", r.opts.Stall)}
		}
		var cv *tls.CertificateVerificationError
		if errors.As(err, &cv) {
			return fmt.Errorf("fetching image %s: %w", r.src.Name, err)
		}
		return retryable{err}
	}
	fail := func(err error) error {
		_ = resp.Body.Close()
		timer.Stop()
		cancel()
		return err
	}
	url := redact(r.src.URL)
	switch {
	case r.off == 0 && resp.StatusCode == http.StatusOK:
		if n := resp.ContentLength; n >= 0 {
			if r.size > 0 && n != r.size {
				return fail(fmt.Errorf("fetching image %s: %s serves %d bytes, the image's size is %d: the server holds another blob", r.src.Name, url, n, r.size))
			}
			r.size = n
		}
		if et := resp.Header.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
			r.validator = et
		} else if lm := resp.Header.Get("Last-Modified"); lm != "" {
			r.validator = lm
		}
	case r.off > 0 && resp.StatusCode == http.StatusPartialContent:
		if err := r.checkRange(resp.Header.Get("Content-Range")); err != nil {
			return fail(fmt.Errorf("fetching image %s: resuming from %s at byte %d: %w", r.src.Name, url, r.off, err))
		}
		r.resumes.Add(1)
		r.logf("image %s: resumed at byte %d of %s", r.src.Name, r.off, sizeOrUnknown(r.size))
	case r.off > 0 && resp.StatusCode == http.StatusOK:
		r.startOver = true
		return fail(errStartOver)
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout:
		return fail(retryable{fmt.Errorf("%s answered %s", url, resp.Status)})
	default:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fail(fmt.Errorf("fetching image %s: %s answered %s%s: check the URL and the credentials", r.src.Name, url, resp.Status, quoteBody(msg)))
	}
	timer.Stop()
	r.body, r.cancel, r.timer = resp.Body, cancel, timer
	return nil
}

// checkRange checks a 206's Content-Range, "bytes START-END/TOTAL", against the request.
func (r *blobReader) checkRange(cr string) error {
	spec, ok := strings.CutPrefix(cr, "bytes ")
	rng, total, ok2 := strings.Cut(spec, "/")
	first, last, ok3 := strings.Cut(rng, "-")
	start, err1 := strconv.ParseInt(first, 10, 64)
	end, err2 := strconv.ParseInt(last, 10, 64)
	if !ok || !ok2 || !ok3 || err1 != nil || err2 != nil {
		return fmt.Errorf("the answer's Content-Range %q is not bytes START-END/TOTAL", cr)
	}
	if start != r.off {
		return fmt.Errorf("the answer starts at byte %d (Content-Range %q), not at %d", start, cr, r.off)
	}
	if total != "*" {
		n, err := strconv.ParseInt(total, 10, 64)
		if err != nil {
			return fmt.Errorf("the answer's Content-Range %q has no valid total", cr)
		}
		if r.size > 0 && n != r.size {
			return fmt.Errorf("the answer's Content-Range %q says the blob is %d bytes, not %d: the server holds another blob", cr, n, r.size)
		}
		if end != n-1 {
			return fmt.Errorf("the answer's Content-Range %q stops before the blob's end", cr)
		}
		r.size = n
	}
	return nil
}

func (r *blobReader) closeBody() {
	if r.body == nil {
		return
	}
	r.timer.Stop()
	r.cancel()
	_ = r.body.Close()
	r.body = nil
}

func (r *blobReader) logf(format string, args ...any) {
	if r.opts.Log != nil {
		r.opts.Log(format, args...)
	}
}

func sizeOrUnknown(n int64) string {
	if n <= 0 {
		return "an unknown size"
	}
	return strconv.FormatInt(n, 10)
}

func quoteBody(b []byte) string {
	s := strings.TrimSpace(string(b))
	if s == "" {
		return ""
	}
	return fmt.Sprintf(" (%q)", s)
}
