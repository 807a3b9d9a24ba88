//go:build !linux

package disk

import (
	"errors"
	"os"
)

var errNotLinux = errors.New("block devices are handled on Linux only; use an image file")

func blockGeometry(*os.File) (size, sector int64, err error) { return 0, 0, errNotLinux }
func zeroOut(*os.File, int64, int64) error                   { return errNotLinux }
func reread(*os.File) error                                  { return errNotLinux }
