package image

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"unsafe"
)

// The writes' shape.
const (
	align      = 4096    // the offset and length of a direct write, and the zero check's block
	bufSize    = 4 << 20 // one buffer of the image
	nbufs      = 4       // buffers in flight: decoding, hashing and writing at once
	minZeroRun = 64 << 10
	maxZeroOut = 1 << 30 // the largest range one BLKZEROOUT zeroes
)

var zeroBlock = make([]byte, align)

// target is the file or device being written.
type target struct {
	path   string
	f      *os.File
	dev    bool  // a block device, else a regular file
	size   int64 // a device's size; a file's size when Write began (it keeps at least that)
	direct bool  // O_DIRECT is on
	// touched is set once image data (or zeros) went to the target: from then on, starting
	// over is no longer free.
	touched bool

	zeroOff, zeroLen int64 // a device range still to be zeroed
	zeroOutFails     bool  // BLKZEROOUT failed once: write zeros instead
	zeros            []byte
}

// openTarget opens path for writing: a block device exclusively (it fails when the device is
// mounted or in use), a regular file created when missing; with O_DIRECT when it takes it.
func openTarget(path string) (*target, error) {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// created below
	case err != nil:
		return nil, fmt.Errorf("opening target %s: %w", path, err)
	case st.Mode()&fs.ModeDevice != 0 && st.Mode()&fs.ModeCharDevice == 0:
		return openDevice(path)
	case !st.Mode().IsRegular():
		return nil, fmt.Errorf("target %s is a %s, not a block device or a regular file: name the disk (e.g. /dev/sda, /dev/disk/by-id/...)", path, st.Mode().Type())
	}
	return openFile(path)
}

func (t *target) close() { _ = t.f.Close() }

// prepare readies the target before the first byte of the image: a file is emptied (all
// zeros, its size kept: a disk image file stays the size of its disk), and on a device the
// first head bytes are zeroed and synced, so that what booted from it before does not boot
// while it is half written.
func (t *target) prepare(head int64) error {
	if !t.dev {
		if fi, err := t.f.Stat(); err == nil {
			t.size = fi.Size()
		}
		if err := t.f.Truncate(0); err != nil {
			return fmt.Errorf("emptying %s: %w", t.path, err)
		}
		if err := t.f.Truncate(t.size); err != nil {
			return fmt.Errorf("emptying %s: %w", t.path, err)
		}
		return nil
	}
	if head > t.size {
		head = t.size
	}
	if head > 0 {
		if err := t.zero(0, head); err != nil {
			return err
		}
		t.touched = false // zeroing the head is no part of the image: starting over stays free
		if err := t.f.Sync(); err != nil {
			return fmt.Errorf("syncing %s: %w", t.path, err)
		}
	}
	return nil
}

// write puts the image's bytes p at off, skipping runs of zero blocks of minZeroRun or more
// (zeroing them on a device); it returns how many bytes it skipped.
func (t *target) write(p []byte, off int64) (int64, error) {
	if t.dev && off+int64(len(p)) > t.size {
		return 0, fmt.Errorf("the image is larger than device %s (%d bytes, %s): choose a larger disk", t.path, t.size, SizeIEC(t.size))
	}
	var zero int64
	data := 0 // start of the data not yet written
	for i := 0; i < len(p); {
		if !isZero(p[i:min(i+align, len(p))]) {
			i += align
			continue
		}
		j := i + align
		for j < len(p) && isZero(p[j:min(j+align, len(p))]) {
			j += align
		}
		// The run ends at the last whole block: an unaligned tail is written as data, so
		// that every zeroed range suits BLKZEROOUT and O_DIRECT.
		j = min(j, i+(len(p)-i)&^(align-1))
		if j-i < minZeroRun {
			i = max(j, i+align)
			continue
		}
		if err := t.writeData(p[data:i], off+int64(data)); err != nil {
			return zero, err
		}
		if err := t.skipZero(off+int64(i), int64(j-i)); err != nil {
			return zero, err
		}
		zero += int64(j - i)
		data, i = j, j
	}
	return zero, t.writeData(p[data:], off+int64(data))
}

// writeData writes p at off: directly when both are aligned, else through the page cache.
func (t *target) writeData(p []byte, off int64) error {
	if len(p) == 0 {
		return nil
	}
	t.touched = true
	aligned := off%align == 0 && len(p)%align == 0 && uintptr(unsafe.Pointer(&p[0]))%align == 0
	if t.direct && !aligned {
		if err := t.setDirect(false); err != nil {
			return err
		}
		defer func() { _ = t.setDirect(true) }()
	}
	_, err := t.f.WriteAt(p, off)
	if err != nil && t.direct && isEINVAL(err) {
		// The file system opened with O_DIRECT but refuses the write: go through the cache.
		if err := t.setDirect(false); err != nil {
			return err
		}
		t.direct = false
		_, err = t.f.WriteAt(p, off)
	}
	if err != nil {
		return fmt.Errorf("writing %s at byte %d: %w", t.path, off, err)
	}
	return nil
}

// skipZero leaves a hole in a file; on a device it batches the range to be zeroed.
func (t *target) skipZero(off, n int64) error {
	if !t.dev {
		return nil
	}
	t.touched = true
	if t.zeroLen > 0 && t.zeroOff+t.zeroLen == off && t.zeroLen+n <= maxZeroOut {
		t.zeroLen += n
		return nil
	}
	if err := t.flushZero(); err != nil {
		return err
	}
	t.zeroOff, t.zeroLen = off, n
	return nil
}

func (t *target) flushZero() error {
	if t.zeroLen == 0 {
		return nil
	}
	err := t.zero(t.zeroOff, t.zeroLen)
	t.zeroLen = 0
	return err
}

// zero makes a device range read back as zeros: BLKZEROOUT, else written zeros.
func (t *target) zero(off, n int64) error {
	if !t.zeroOutFails {
		err := zeroOut(t.f, off, n)
		if err == nil {
			return nil
		}
		t.zeroOutFails = true
	}
	if t.zeros == nil {
		t.zeros = alignedBuffer(1 << 20)
	}
	for n > 0 {
		k := min(n, int64(len(t.zeros)))
		if err := t.writeData(t.zeros[:k], off); err != nil {
			return err
		}
		off += k
		n -= k
	}
	return nil
}

// finish zeroes what is pending, gives a file its size (it may end in a hole) and syncs.
func (t *target) finish(size int64) error {
	if err := t.flushZero(); err != nil {
		return err
	}
	if !t.dev {
		if err := t.f.Truncate(max(size, t.size)); err != nil {
			return fmt.Errorf("setting the size of %s: %w", t.path, err)
		}
	}
	if err := t.f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", t.path, err)
	}
	return nil
}

func isZero(b []byte) bool { return bytes.Equal(b, zeroBlock[:len(b)]) }

// alignedBuffer is n bytes whose start is aligned for direct I/O.
func alignedBuffer(n int) []byte {
	b := make([]byte, n+align)
	skip := (align - int(uintptr(unsafe.Pointer(&b[0]))%align)) % align
	return b[skip : skip+n : skip+n]
}
