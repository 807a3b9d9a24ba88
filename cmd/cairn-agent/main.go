// Command cairn-agent runs on the hosts cairn provisions: as /init of the netboot initramfs it
// writes the OS image to disk, and on the installed OS it keeps the host's containers running.
// It is built static (CGO_ENABLED=0) and imports no registry or build code.
//
// Only "version" exists so far; the netboot and host modes are not implemented yet.
package main

import (
	"fmt"
	"os"
	"runtime"
)

// version is set at build time from VERSION and git describe (see Makefile).
var version = "dev"

func main() {
	if len(os.Args) == 2 && os.Args[1] == "version" {
		fmt.Printf("cairn-agent %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return
	}
	fmt.Fprintln(os.Stderr, "usage: cairn-agent version\n(the netboot and host modes are not implemented in this version)")
	os.Exit(2)
}
