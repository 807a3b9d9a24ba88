//go:build unix

package image

import (
	"os"
	"syscall"
)

// allocated is how many bytes of the file's blocks are allocated (st_blocks of 512 bytes).
func allocated(fi os.FileInfo) (int64, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int64(st.Blocks) * 512, true
}
