//go:build !linux

package image

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Other systems get plain writes: no O_DIRECT, no BLKZEROOUT. The agent runs on Linux; this
// keeps the package building elsewhere.

func openDevice(path string) (*target, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0) //nolint:gosec // the operator's target
	if err != nil {
		return nil, fmt.Errorf("opening device %s: %w", path, err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("reading the size of device %s: %w", path, err)
	}
	return &target{path: path, f: f, dev: true, size: size}, nil
}

func openFile(path string) (*target, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644) //nolint:gosec // the operator's target
	if err != nil {
		return nil, fmt.Errorf("opening target %s: %w", path, err)
	}
	return &target{path: path, f: f}, nil
}

func (t *target) setDirect(bool) error { return nil }

var errUnsupported = errors.New("not supported on this system")

func zeroOut(*os.File, int64, int64) error { return errUnsupported }

func rereadPartitions(*os.File) error { return errUnsupported }

func isEINVAL(error) bool { return false }
