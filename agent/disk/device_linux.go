package disk

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// blockGeometry is a block device's size in bytes and its logical sector size.
func blockGeometry(f *os.File) (size, sector int64, err error) {
	var n uint64
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&n))); e != 0 {
		return 0, 0, fmt.Errorf("reading its size (BLKGETSIZE64): %w", e)
	}
	ss, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET)
	if err != nil {
		return 0, 0, fmt.Errorf("reading its sector size (BLKSSZGET): %w", err)
	}
	if ss != 512 && ss != 4096 {
		return 0, 0, fmt.Errorf("its logical sectors are %d bytes; cairn handles 512 and 4096", ss)
	}
	return int64(n), int64(ss), nil
}

// zeroOut zeroes a range of a block device with BLKZEROOUT; off and n are multiples of 512.
func zeroOut(f *os.File, off, n int64) error {
	r := [2]uint64{uint64(off), uint64(n)}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKZEROOUT, uintptr(unsafe.Pointer(&r[0]))); e != 0 {
		return e
	}
	return nil
}

// reread asks the kernel to read the partition table again (BLKRRPART).
func reread(f *os.File) error {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKRRPART, 0); e != 0 {
		switch {
		case errors.Is(e, unix.EBUSY):
			return fmt.Errorf("the kernel did not re-read the partition table: a partition is in use (%w); the new table counts from the next boot", e)
		case errors.Is(e, unix.EINVAL):
			return fmt.Errorf("the kernel did not re-read the partition table: the device has no partition scanning (%w), as a loop device without -P", e)
		}
		return fmt.Errorf("the kernel did not re-read the partition table (BLKRRPART): %w", e)
	}
	return nil
}
