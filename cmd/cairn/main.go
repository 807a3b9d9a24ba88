// Command cairn builds offline appliances and runs them: see README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// version is set at build time from VERSION and git describe (see Makefile).
var version = "dev"

// stopGrace is how long a command has to stop after SIGINT or SIGTERM before cairn exits
// anyway: longer than the 10s the daemon and bundle serve give open connections to drain, so
// that it cuts no clean stop short, and only a stuck one.
const stopGrace = 15 * time.Second

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go onSignals(sigs, cancel, os.Exit, os.Stderr, stopGrace)
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// onSignals cancels the command on the first signal, so that it stops and cleans up after
// itself, and exits at once on a second, or when the command has not stopped within grace.
func onSignals(sigs <-chan os.Signal, cancel context.CancelCauseFunc, exit func(int), stderr io.Writer, grace time.Duration) {
	first, ok := <-sigs
	if !ok {
		return
	}
	cancel(errors.New(first.String()))
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case s := <-sigs:
		exit(signalExit(s))
	case <-t.C:
		say(stderr, fmt.Sprintf("cairn: still running %s after %s; exiting\n", grace, first))
		exit(signalExit(first))
	}
}

// signalExit is the exit status of a command ended by s, as shells report one: 128+s.
func signalExit(s os.Signal) int {
	if n, ok := s.(syscall.Signal); ok {
		return 128 + int(n)
	}
	return exitFailed
}

// say writes msg to w unless w blocks (a pipe nobody reads): an exit must not wait on it.
func say(w io.Writer, msg string) {
	done := make(chan struct{})
	go func() {
		_, _ = io.WriteString(w, msg)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(100 * time.Millisecond):
	}
}
