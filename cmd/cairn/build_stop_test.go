package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/build/buildtest"
)

// cairnProc is the cairn binary, running.
type cairnProc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when it has exited, with err set
	err    error
}

// startCairn starts the cairn binary bin with args; it is killed if the test ends first.
func startCairn(t *testing.T, bin string, stdout, stderr *os.File, args ...string) *cairnProc {
	t.Helper()
	p := &cairnProc{cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = stdout, stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// exitCode is the exit status of p, which has exited.
func (p *cairnProc) exitCode() int {
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		return -1
	}
	return 0
}

// TestBuildToDevNull builds with stdout and stderr on /dev/null, as cron, a unit with
// StandardOutput=null or `>/dev/null 2>&1` run it. /dev/null is a character device, and cairn
// once took it for a terminal and drew bars into it that never ended.
func TestBuildToDevNull(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: builds cairn")
	}
	dir := t.TempDir()
	bin := buildCairn(t, dir)
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	out := filepath.Join(dir, "store")
	p := startCairn(t, bin, null, null, "build", "-f", buildtest.Build(t, ""), "-o", out, "--cache", filepath.Join(dir, "cache"))
	select {
	case <-p.exited:
		if p.err != nil {
			t.Fatalf("cairn build >/dev/null 2>&1: %v (run it without the redirection to see why)", p.err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("cairn build >/dev/null 2>&1 did not end within 2 minutes")
	}
	if _, err := os.Stat(filepath.Join(out, "bundle.json")); err != nil {
		t.Errorf("no store: %v", err)
	}
}

// TestBuildStopsOnSIGTERM sends SIGTERM to a build in the middle of a download that would never
// end, its progress going to a file (lines) or to /dev/null: cairn must exit promptly, with a
// failure, and leave nothing beside its output.
func TestBuildStopsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: builds cairn")
	}
	bin := buildCairn(t, t.TempDir())
	for _, stderr := range []string{"a file", os.DevNull} {
		t.Run("stderr to "+stderr, func(t *testing.T) {
			dir := t.TempDir()
			errPath := stderr
			if stderr == "a file" {
				errPath = filepath.Join(dir, "stderr")
			}
			errFile, err := os.OpenFile(errPath, os.O_WRONLY|os.O_CREATE, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			defer errFile.Close()
			stalled, started := buildtest.StalledFile(t)
			parent := t.TempDir() // holds the output, and nothing else
			out := filepath.Join(parent, "store")
			// One artifact at a time: the images are fetched, and their bars done, when the
			// stalled download begins.
			p := startCairn(t, bin, nil, errFile, "build", "-f", buildtest.Build(t, stalled), "-o", out, "--cache", filepath.Join(dir, "cache"), "--jobs", "1")
			select {
			case <-started:
			case <-p.exited:
				t.Fatalf("cairn build ended before the download began: %v", p.err)
			case <-time.After(2 * time.Minute):
				t.Fatal("the download did not begin within 2 minutes")
			}
			sent := time.Now()
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case <-p.exited:
			case <-time.After(5 * time.Second):
				t.Fatal("cairn build did not exit within 5s of SIGTERM")
			}
			code := p.exitCode()
			t.Logf("exited %s after SIGTERM, status %d", time.Since(sent).Round(time.Millisecond), code)
			if code == 0 {
				t.Error("an interrupted build exited 0")
			}
			if stderr == "a file" {
				if msg, _ := os.ReadFile(errPath); !bytes.Contains(msg, []byte("context canceled")) {
					t.Errorf("stderr does not say the build was interrupted:\n%s", msg)
				}
			}
			ents, err := os.ReadDir(parent)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				t.Errorf("an interrupted build left %s beside its output", e.Name())
			}
		})
	}
}
