// Command mkimage builds the example host OS disk image (package hostimage), or finds it in the
// cache, and prints the compressed image's path. `make host-image` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cairn-appliance/cairn/examples/hostimage"
)

func main() {
	cache := flag.String("cache", "", "directory that keeps one image per recipe key (default: $"+hostimage.CacheEnv+", else ~/.cache/cairn/host-image)")
	mirror := flag.String("mirror", "", "Debian mirror to install from (default: http://deb.debian.org/debian)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	info, err := hostimage.Build(ctx, hostimage.Config{CacheDir: *cache, Mirror: *mirror, Log: os.Stderr})
	if err != nil {
		fmt.Fprintf(os.Stderr, "mkimage: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "mkimage: host image %s ready in %s: %d bytes (%d uncompressed), described in %s\n",
		info.Recipe[:16], time.Since(start).Round(time.Second), info.Size, info.UncompressedSize, hostimage.InfoFile)
	fmt.Println(info.Path())
}
