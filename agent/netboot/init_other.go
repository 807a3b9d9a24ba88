//go:build !linux

package netboot

import (
	"fmt"
	"os"
	"runtime"
)

// Init is the initramfs's /init, on Linux only.
func Init(string) {
	fmt.Fprintf(os.Stderr, "cairn-agent: the netboot agent runs on Linux only, not %s\n", runtime.GOOS)
	os.Exit(1)
}
