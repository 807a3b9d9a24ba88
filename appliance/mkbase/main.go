// Command mkbase builds the appliance base (vmlinuz, initrd.img, filesystem.squashfs) for the
// recipe in package appliance, or finds it in the cache, and prints its directory. `make
// appliance-base` runs it; `cairn build` and the VM tests call appliance.Build directly.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cairn-appliance/cairn/appliance"
)

func main() {
	cache := flag.String("cache", "", "directory that keeps one base per recipe key (default: $CAIRN_APPLIANCE_CACHE, else ~/.cache/cairn/appliance-base)")
	mirror := flag.String("mirror", "", "Debian mirror to install from (default: http://deb.debian.org/debian)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	dir, err := appliance.Build(ctx, appliance.BuildConfig{CacheDir: *cache, Mirror: *mirror, Log: os.Stderr})
	if err != nil {
		fmt.Fprintf(os.Stderr, "mkbase: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "mkbase: appliance base %s ready in %s\n", appliance.RecipeKey()[:16], time.Since(start).Round(time.Second))
	fmt.Println(dir)
}
