package disk

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// device is an open disk: a block device or a plain file.
type device struct {
	f     *os.File
	path  string
	block bool
	size  int64 // bytes
	// sector is the logical sector size of a block device; 0 for a file, whose sector size
	// is that of the table it holds (see sectorSize).
	sector int64
}

func open(path string, write bool) (*device, error) {
	flag := os.O_RDONLY
	if write {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	d := &device{f: f, path: path}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	switch {
	case st.Mode().IsRegular():
		d.size = st.Size()
	case st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0:
		d.block = true
		if d.size, d.sector, err = blockGeometry(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	default:
		f.Close()
		return nil, fmt.Errorf("%s is neither a block device nor a file (%s): name the disk itself, e.g. /dev/sda", path, st.Mode().Type())
	}
	return d, nil
}

func (d *device) Close() error { return d.f.Close() }

// sectorSize is the logical sector size: a block device's; for a file, 512 unless the file
// holds a GPT for 4096-byte sectors.
func (d *device) sectorSize() int64 {
	if d.sector != 0 {
		return d.sector
	}
	b := make([]byte, 8)
	if _, err := d.f.ReadAt(b, 512); err == nil && string(b) == gptSignature {
		return 512
	}
	if _, err := d.f.ReadAt(b, 4096); err == nil && string(b) == gptSignature {
		return 4096
	}
	return 512
}

func (d *device) readAt(n, off int64) ([]byte, error) {
	b := make([]byte, n)
	if _, err := d.f.ReadAt(b, off); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("reading %d bytes at offset %d of %s: it ends at %d", n, off, d.path, d.size)
		}
		return nil, fmt.Errorf("reading %s: %w", d.path, err)
	}
	return b, nil
}

func (d *device) writeAt(b []byte, off int64) error {
	if off < 0 || off+int64(len(b)) > d.size {
		return fmt.Errorf("writing %d bytes at offset %d of %s, which ends at %d", len(b), off, d.path, d.size)
	}
	if _, err := d.f.WriteAt(b, off); err != nil {
		return fmt.Errorf("writing %s: %w", d.path, err)
	}
	return nil
}

// zero zeroes n bytes at off (clipped to the device): BLKZEROOUT on a block device, which
// the kernel does without moving the zeros through memory where the disk can, else writes.
func (d *device) zero(off, n int64) error {
	off = max(off, 0)
	n = min(n, d.size-off)
	if n <= 0 {
		return nil
	}
	if d.block && zeroOut(d.f, off, n) == nil {
		return nil
	}
	buf := make([]byte, min(n, mib))
	for n > 0 {
		k := min(n, int64(len(buf)))
		if err := d.writeAt(buf[:k], off); err != nil {
			return err
		}
		off += k
		n -= k
	}
	return nil
}

func (d *device) sync() error {
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", d.path, err)
	}
	return nil
}
