// Command cairn builds offline appliances and runs them: see README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time from VERSION and git describe (see Makefile).
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
