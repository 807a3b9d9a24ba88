package main

import (
	"context"
	"io"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestOnSignals(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sigs     []os.Signal
		grace    time.Duration
		wantExit int // -1: onSignals does not exit
	}{
		{"one signal cancels", []os.Signal{syscall.SIGTERM}, time.Minute, -1},
		{"a second exits at once", []os.Signal{syscall.SIGTERM, os.Interrupt}, time.Minute, 128 + int(syscall.SIGINT)},
		{"a command that does not stop", []os.Signal{os.Interrupt}, 50 * time.Millisecond, 128 + int(syscall.SIGINT)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sigs := make(chan os.Signal, len(tc.sigs))
			for _, s := range tc.sigs {
				sigs <- s
			}
			ctx, cancel := context.WithCancelCause(context.Background())
			exited := make(chan int, 1)
			go onSignals(sigs, cancel, func(code int) { exited <- code }, io.Discard, tc.grace)
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("a signal did not cancel the command")
			}
			if got := context.Cause(ctx).Error(); got != tc.sigs[0].String() {
				t.Errorf("cause = %q, want %q", got, tc.sigs[0].String())
			}
			select {
			case code := <-exited:
				if tc.wantExit < 0 {
					t.Errorf("exited %d, want no exit while the command stops", code)
				} else if code != tc.wantExit {
					t.Errorf("exited %d, want %d", code, tc.wantExit)
				}
			case <-time.After(2 * time.Second):
				if tc.wantExit >= 0 {
					t.Errorf("did not exit, want exit %d", tc.wantExit)
				}
			}
		})
	}
}
