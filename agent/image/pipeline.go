package image

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/cairn-appliance/cairn/agent/api"
)

// chunk is one buffer of the image on its way to the hash and to the target.
type chunk struct {
	buf  []byte
	n    int
	off  int64
	refs atomic.Int32
}

// run makes one attempt at the whole image: fetch, decode, hash and write, then check and
// finish. It returns errStartOver (wrapped) when the server answered a resume with the whole
// blob.
func (w *writer) run(ctx context.Context) (Result, error) {
	src, t := w.src, w.t
	g, gctx := errgroup.WithContext(ctx)
	br := &blobReader{ctx: gctx, src: src, opts: w.opts, size: src.Size, resumes: &w.resumes}
	if src.Digest != "" {
		br.hash = sha256.New()
	}
	defer br.closeBody()
	// A small buffer, for the magic number and zstd's block headers: reads as large as it go
	// straight to the connection, saving a copy of the blob.
	in := bufio.NewReaderSize(br, 4096)

	// The first bytes say the format, and whether the image can be checked at all, before
	// anything is written.
	head, err := in.Peek(8)
	if err != nil && !errors.Is(err, io.EOF) {
		if br.startOver {
			return Result{}, errStartOver
		}
		return Result{}, err
	}
	format := src.Format
	detected := detect(head)
	if detected == api.FormatQcow2 {
		return Result{}, errQcow2(src.Name)
	}
	if format == "" {
		format = detected
	}
	want := src.UncompressedDigest
	if want == "" {
		if format != api.FormatRaw || src.Digest == "" {
			return Result{}, fmt.Errorf("image %s (%s) has no uncompressed digest: the agent writes only what it can check; "+
				"give the sha256 of the uncompressed image", src.Name, format)
		}
		want = src.Digest
	}
	dec, release, err := decoder(format, in, w.opts.MaxWindow)
	if err != nil {
		return Result{}, decodeError(src.Name, format, w.opts.MaxWindow, err)
	}
	defer release()

	if !w.prepared {
		if err := t.prepare(w.opts.HoldHead); err != nil {
			return Result{}, err
		}
		w.prepared = true
	}
	hold := w.opts.HoldHead
	if t.dev {
		hold = min(hold, t.size)
	}
	var held []byte
	if hold > 0 {
		held = alignedBuffer(int(hold))
	}
	heldLen := 0

	free := make(chan *chunk, nbufs)
	for range nbufs {
		free <- &chunk{buf: alignedBuffer(bufSize)}
	}
	release1 := func(c *chunk) {
		if c.refs.Add(-1) == 0 {
			free <- c
		}
	}
	hashCh, writeCh := make(chan *chunk, nbufs), make(chan *chunk, nbufs)
	sum := sha256.New()
	var total, zero int64

	g.Go(func() error { // hash, in order
		for c := range hashCh {
			sum.Write(c.buf[:c.n])
			release1(c)
		}
		return nil
	})
	g.Go(func() error { // write, in order; an error cancels the fetch
		for c := range writeCh {
			err := w.put(c, held, &heldLen, &zero)
			release1(c)
			if err != nil {
				return err
			}
		}
		return nil
	})
	g.Go(func() error { // fetch and decode
		defer close(writeCh)
		defer close(hashCh)
		var off int64
		for {
			var c *chunk
			select {
			case c = <-free:
			case <-gctx.Done():
				return gctx.Err()
			}
			n, err := fill(dec, c.buf)
			if n > 0 {
				if src.UncompressedSize > 0 && off+int64(n) > src.UncompressedSize {
					return fmt.Errorf("image %s decompresses to more than its size, %d bytes: the blob is not the image the plan names", src.Name, src.UncompressedSize)
				}
				c.n, c.off = n, off
				c.refs.Store(2)
				off += int64(n)
				if off > hold {
					w.pastHead = true // from here on the target gets data
				}
				hashCh <- c
				writeCh <- c
			} else {
				free <- c
			}
			if errors.Is(err, io.EOF) {
				total = off
				// The decoder stops at the end of the compressed data; the blob's digest
				// covers all of it.
				_, err := io.Copy(io.Discard, in)
				return err
			}
			if err != nil {
				switch {
				case br.startOver:
					return errStartOver
				case br.err != nil:
					return br.err
				case ctx.Err() != nil:
					return ctx.Err()
				}
				return decodeError(src.Name, format, w.opts.MaxWindow, err)
			}
		}
	})
	err = g.Wait()
	w.blobOff = br.off
	if err != nil {
		return Result{}, err
	}

	if br.size > 0 && br.off != br.size {
		return Result{}, fmt.Errorf("fetching image %s: got %d bytes of a %d-byte blob", src.Name, br.off, br.size)
	}
	if src.UncompressedSize > 0 && total != src.UncompressedSize {
		return Result{}, fmt.Errorf("image %s decompressed to %d bytes, not its size of %d: the blob is not the image the plan names", src.Name, total, src.UncompressedSize)
	}
	if err := t.finish(total); err != nil {
		return Result{}, err
	}
	if br.hash != nil {
		if got := digestOf(br.hash.Sum(nil)); got != src.Digest {
			return Result{}, &DigestError{Name: src.Name, Want: src.Digest, Got: got, Blob: true, Held: min(hold, total)}
		}
	}
	got := digestOf(sum.Sum(nil))
	if got != want {
		return Result{}, &DigestError{Name: src.Name, Want: want, Got: got, Held: min(hold, total)}
	}
	// Only now does the disk get its head: the partition table and the boot code.
	if heldLen > 0 {
		if err := t.writeData(held[:heldLen], 0); err != nil {
			return Result{}, err
		}
		if err := t.f.Sync(); err != nil {
			return Result{}, fmt.Errorf("syncing %s: %w", t.path, err)
		}
	}
	if t.dev {
		if err := rereadPartitions(t.f); err != nil {
			w.logf("image %s: the kernel did not re-read the partition table of %s (%v); it will at the next boot", src.Name, t.path, err)
		}
	}
	return Result{Written: total, Digest: got, Zero: zero, Resumes: int(w.resumes.Load())}, nil
}

// put hands one chunk to the target, keeping the part that falls in the held head.
func (w *writer) put(c *chunk, held []byte, heldLen *int, zero *int64) error {
	p, off := c.buf[:c.n], c.off
	if off < int64(len(held)) {
		k := copy(held[off:], p)
		*heldLen = int(off) + k
		p, off = p[k:], off+int64(k)
	}
	z, err := w.t.write(p, off)
	*zero += z
	w.written.Add(int64(c.n))
	return err
}

// fill reads until p is full or the reader ends; io.EOF means the end, with n bytes before it.
func fill(r io.Reader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k, err := r.Read(p[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
