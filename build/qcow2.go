package build

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
	"github.com/lima-vm/go-qcow2reader"
	"github.com/lima-vm/go-qcow2reader/convert"
	"github.com/lima-vm/go-qcow2reader/image/qcow2"
	qlog "github.com/lima-vm/go-qcow2reader/log"
)

// qcow2Magic starts every qcow2 file.
var qcow2Magic = []byte{'Q', 'F', 'I', 0xfb}

// isQcow2 reports whether the file at p starts as a qcow2 image does.
func isQcow2(p string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	head := make([]byte, len(qcow2Magic))
	n, _ := io.ReadFull(f, head)
	return bytes.Equal(head[:n], qcow2Magic), nil
}

// convertedPath is where the cache keeps the raw+zstd conversion of a qcow2 source, by the
// source's sha256.
func (c *Cache) convertedPath(hexDigest string) string {
	return filepath.Join(c.Dir, "converted", hexDigest+".raw.zst")
}

// convertedSize is the size of a source's conversion when the cache holds it.
func (c *Cache) convertedSize(hexDigest string) (int64, bool) {
	info, err := os.Stat(c.convertedPath(hexDigest))
	if err != nil {
		return 0, false
	}
	return info.Size(), true
}

var qcow2Setup sync.Once

// setupQcow2 gives go-qcow2reader a zstd decoder (it has none of its own) and silences its
// warnings, which it would print to the process's log: a library of cairn's stays quiet.
func setupQcow2() {
	qcow2Setup.Do(func() {
		qcow2.SetDecompressor(qcow2.CompressionTypeZstd, zstdCluster)
		qlog.SetWarnFunc(nil)
	})
}

// zstdDecoders are reused across clusters: a qcow2 image compresses each cluster (64 KiB) on
// its own, and a new decoder for each would cost more than the data.
var zstdDecoders sync.Pool

func zstdCluster(r io.Reader) (io.ReadCloser, error) {
	if d, ok := zstdDecoders.Get().(*zstd.Decoder); ok {
		if err := d.Reset(r); err == nil {
			return pooledDecoder{d}, nil
		}
		d.Close()
	}
	d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
	if err != nil {
		return nil, err
	}
	return pooledDecoder{d}, nil
}

type pooledDecoder struct{ *zstd.Decoder }

func (p pooledDecoder) Close() error {
	zstdDecoders.Put(p.Decoder)
	return nil
}

// convertQcow2 returns the path of a raw+zstd file holding the disk that the qcow2 image at
// path (the source s) describes. The conversion runs once per source sha256: the cache keeps
// its result. The image is converted into a sparse raw file in the cache's tmp/ (zero
// clusters stay holes), which is then compressed with zstd into the cache; memory stays
// bounded (a few buffers of 1 MiB and the encoder's window) whatever the image's size.
func (f *fetcher) convertQcow2(ctx context.Context, s source, path string) (string, error) {
	dst := f.cache.convertedPath(s.SHA256)
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	fail := func(err error) (string, error) {
		return "", fmt.Errorf("%s from %s (sha256 %s): converting qcow2 to raw+zstd: %w", s.label(), s.Source, s.SHA256, err)
	}
	setupQcow2()
	in, err := os.Open(path)
	if err != nil {
		return fail(err)
	}
	img, err := qcow2reader.OpenWithType(in, qcow2.Type)
	if err != nil {
		_ = in.Close()
		return fail(fmt.Errorf("%w; expected a readable qcow2 image (qemu-img check tells what is wrong with it)", err))
	}
	defer img.Close() // closes in
	if q, ok := img.(*qcow2.Qcow2); ok && q.BackingFile != "" {
		return fail(fmt.Errorf("it has a backing file (%s), which the build does not have; carry a standalone image: qemu-img convert -O qcow2 IMAGE OUT", q.BackingFile))
	}
	if err := img.Readable(); err != nil {
		return fail(fmt.Errorf("%w; expected a readable qcow2 image (qemu-img check tells what is wrong with it)", err))
	}
	size := img.Size()
	if size < 0 {
		return fail(fmt.Errorf("the image does not say its size"))
	}
	tmpDir := filepath.Join(f.cache.Dir, "tmp")
	raw, err := os.CreateTemp(tmpDir, s.SHA256+".*.raw")
	if err != nil {
		return fail(err)
	}
	defer func() {
		_ = raw.Close()
		_ = os.Remove(raw.Name())
	}()
	var done atomic.Int64
	opts := convert.Options{Progress: updater(func(n int64) {
		if f.progress != nil {
			f.progress(s, done.Add(n), size)
		}
	})}
	if err := convert.Convert(ctxWriterAt{ctx, raw}, img, opts); err != nil {
		return fail(fmt.Errorf("%w; expected a readable qcow2 image (qemu-img check tells what is wrong with it)", err))
	}
	if err := raw.Truncate(size); err != nil { // the tail may be a hole Convert did not write
		return fail(err)
	}
	out, err := os.CreateTemp(tmpDir, s.SHA256+".*.raw.zst")
	if err != nil {
		return fail(err)
	}
	defer os.Remove(out.Name()) // after the rename, there is nothing left to remove
	// One setting everywhere, concurrency included, so that every machine writes the same
	// bytes for the same image.
	enc, err := zstd.NewWriter(out, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(2))
	if err != nil {
		_ = out.Close()
		return fail(err)
	}
	n, err := io.CopyBuffer(enc, ctxReader{ctx, io.NewSectionReader(raw, 0, size)}, make([]byte, 1<<20))
	if cerr := enc.Close(); err == nil {
		err = cerr
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		err = fmt.Errorf("read %d bytes of the %d-byte disk", n, size)
	}
	if err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return fail(err)
	}
	if err := os.Chmod(out.Name(), 0o644); err != nil { //nolint:gosec // read by the store, like every cached file
		return fail(err)
	}
	if err := os.Rename(out.Name(), dst); err != nil {
		return fail(err)
	}
	return dst, nil
}

type updater func(n int64)

func (u updater) Update(n int64) { u(n) }

// ctxWriterAt stops a conversion when the build is cancelled.
type ctxWriterAt struct {
	ctx context.Context
	w   io.WriterAt
}

func (c ctxWriterAt) WriteAt(b []byte, off int64) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.WriteAt(b, off)
}

// ctxReader stops a copy when the build is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(b)
}
