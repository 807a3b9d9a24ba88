package image

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

func openDevice(path string) (*target, error) {
	// O_EXCL on a block device fails with EBUSY while it is mounted or held (LVM, RAID, swap).
	f, direct, err := openMaybeDirect(path, os.O_RDWR|unix.O_EXCL)
	if errors.Is(err, unix.EBUSY) {
		return nil, fmt.Errorf("opening device %s: it is in use (mounted, or held by LVM, RAID or swap): unmount or release it first", path)
	}
	if err != nil {
		return nil, fmt.Errorf("opening device %s: %w", path, err)
	}
	var size uint64
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size))); e != 0 {
		_ = f.Close()
		return nil, fmt.Errorf("reading the size of device %s (BLKGETSIZE64): %w", path, e)
	}
	return &target{path: path, f: f, dev: true, size: int64(size), direct: direct}, nil //nolint:gosec // a device's size fits
}

func openFile(path string) (*target, error) {
	f, direct, err := openMaybeDirect(path, os.O_RDWR|os.O_CREATE)
	if err != nil {
		return nil, fmt.Errorf("opening target %s: %w", path, err)
	}
	return &target{path: path, f: f, direct: direct}, nil
}

// openMaybeDirect opens with O_DIRECT, and without it where the file system refuses it
// (tmpfs, some FUSE and network file systems).
func openMaybeDirect(path string, flag int) (*os.File, bool, error) {
	f, err := os.OpenFile(path, flag|unix.O_DIRECT|unix.O_CLOEXEC, 0o644) //nolint:gosec // the operator's target
	if err == nil {
		return f, true, nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return nil, false, err
	}
	f, err = os.OpenFile(path, flag|unix.O_CLOEXEC, 0o644) //nolint:gosec // the operator's target
	return f, false, err
}

func (t *target) setDirect(on bool) error {
	fl, err := unix.FcntlInt(t.f.Fd(), unix.F_GETFL, 0)
	if err != nil {
		return fmt.Errorf("reading the flags of %s: %w", t.path, err)
	}
	if on {
		fl |= unix.O_DIRECT
	} else {
		fl &^= unix.O_DIRECT
	}
	if _, err := unix.FcntlInt(t.f.Fd(), unix.F_SETFL, fl); err != nil {
		return fmt.Errorf("setting the flags of %s: %w", t.path, err)
	}
	return nil
}

// zeroOut zeroes a range of a block device with BLKZEROOUT: the device writes the zeros
// itself (WRITE ZEROES, or the loop driver's fallocate) when it can.
func zeroOut(f *os.File, off, n int64) error {
	r := [2]uint64{uint64(off), uint64(n)} //nolint:gosec // non-negative
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKZEROOUT, uintptr(unsafe.Pointer(&r))); e != 0 {
		return e
	}
	return nil
}

// rereadPartitions asks the kernel to read the device's new partition table (BLKRRPART).
func rereadPartitions(f *os.File) error {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKRRPART, 0); e != 0 {
		return e
	}
	return nil
}

func isEINVAL(err error) bool { return errors.Is(err, syscall.EINVAL) }
