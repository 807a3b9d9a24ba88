package vmtest

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestArgsKernelAndShell checks the QEMU arguments of a VM that boots a kernel directly with the
// debug shell on its second serial port, without running QEMU.
func TestArgsKernelAndShell(t *testing.T) {
	vm := &VM{dir: "/d", ports: map[int]int{}, opts: Options{ISO: "/x/cairn.iso", MemoryMiB: 1024, CPUs: 2, Shell: true,
		Kernel: &KernelBoot{Kernel: "/k/kernel", Initrd: "/k/initrd", Cmdline: "boot=live cairn.label=X console=ttyS0,115200n8"}}}
	args := vm.Args("tcg")
	joined := strings.Join(args, " ")
	for _, w := range []string{
		"-kernel /k/kernel", "-initrd /k/initrd",
		"-chardev socket,id=ser1,path=/d/shell.sock,server=on,wait=off -serial chardev:ser1",
		"-chardev file,id=ser0,path=/d/serial.log -serial chardev:ser0",
		"media=cdrom,readonly=on,format=raw,file=/x/cairn.iso",
	} {
		if !strings.Contains(joined, w) {
			t.Errorf("QEMU args lack %q:\n%s", w, joined)
		}
	}
	// ttyS0 must come first: the guest numbers its serial ports in the order they are given.
	if strings.Index(joined, "chardev:ser0") > strings.Index(joined, "chardev:ser1") {
		t.Errorf("the shell's serial port comes before the console's:\n%s", joined)
	}
	for i, a := range args {
		if a == "-append" && (i+1 >= len(args) || args[i+1] != "boot=live cairn.label=X console=ttyS0,115200n8 "+DebugShellArg) {
			t.Errorf("-append %q, want the ISO's command line and %s", args[i+1], DebugShellArg)
		}
	}
	if strings.Contains(joined, "bootindex") {
		t.Errorf("a direct kernel boot gives the medium a boot index; QEMU refuses that:\n%s", joined)
	}
}

func TestShellSocketFitsASocketAddress(t *testing.T) {
	if got := shellSocket(t, "/tmp/d"); got != "/tmp/d/shell.sock" {
		t.Errorf("shellSocket(/tmp/d) = %q, want /tmp/d/shell.sock", got)
	}
	long := "/" + strings.Repeat("x", 120)
	if got := shellSocket(t, long); len(got) > maxSocketPath || !strings.HasSuffix(got, "/shell.sock") {
		t.Errorf("shellSocket(%d bytes) = %q (%d bytes), want a socket path of at most %d bytes", len(long), got, len(got), maxSocketPath)
	}
}

func TestParseIsolinux(t *testing.T) {
	// As build/iso writes it.
	cfg := "SERIAL 0 115200\nPROMPT 0\nTIMEOUT 0\nDEFAULT cairn\nLABEL cairn\n  KERNEL /live/vmlinuz\n" +
		"  APPEND initrd=/live/initrd.img boot=live live-media-path=/live nopersistence noeject cairn.label=CAIRN console=tty0 console=ttyS0,115200n8\n"
	k, i, c, err := parseIsolinux(cfg)
	if err != nil || k != "/live/vmlinuz" || i != "/live/initrd.img" ||
		c != "boot=live live-media-path=/live nopersistence noeject cairn.label=CAIRN console=tty0 console=ttyS0,115200n8" {
		t.Errorf("parseIsolinux = %q, %q, %q, %v", k, i, c, err)
	}
	two := "DEFAULT b\nLABEL a\nKERNEL /a\nAPPEND initrd=/ia x=1\nLABEL b\nKERNEL /b\nAPPEND y=2 initrd=/ib\n"
	if k, i, c, err := parseIsolinux(two); err != nil || k != "/b" || i != "/ib" || c != "y=2" {
		t.Errorf("parseIsolinux(DEFAULT b) = %q, %q, %q, %v, want /b, /ib, y=2", k, i, c, err)
	}
	for _, bad := range []string{"", "DEFAULT x\nLABEL y\nKERNEL /k\nAPPEND initrd=/i\n", "LABEL y\nKERNEL /k\nAPPEND quiet\n"} {
		if _, _, _, err := parseIsolinux(bad); err == nil {
			t.Errorf("parseIsolinux(%q) = nil error", bad)
		}
	}
}

func TestAnswer(t *testing.T) {
	for _, tc := range []struct {
		out, want string
		status    int
		ok        bool
	}{
		{"junk\nT-1-B\nhello\n\nT-1-E 0\nmore", "hello\n", 0, true},
		{"T-1-B\n\nT-1-E 3\n", "", 3, true},
		{"T-1-B\nno newline\nT-1-E 1\n", "no newline", 1, true},
		{"printf '%s-%d-B\\n' T 1\nT-1-B\nx\n\nT-1-E 0\n", "x\n", 0, true}, // the echoed line is no marker
		{"T-1-B\nhalf\n\nT-1-E 0", "", 0, false},
		{"T-1-B\nstill running", "", 0, false},
		{"T-2-B\nother\n\nT-2-E 0\n", "", 0, false},
	} {
		got, status, used, ok := answer([]byte(tc.out), "T", 1)
		if got != tc.want || status != tc.status || ok != tc.ok {
			t.Errorf("answer(%q) = %q, %d, %v, want %q, %d, %v", tc.out, got, status, ok, tc.want, tc.status, tc.ok)
		}
		if ok && !strings.HasSuffix(tc.out[:used], "E "+string(rune('0'+tc.status))+"\n") {
			t.Errorf("answer(%q) used %d bytes, want up to the end marker's line", tc.out, used)
		}
	}
}

// TestShellRun drives a real bash through the framing Run uses, as the guest's debug shell
// would run it.
func TestShellRun(t *testing.T) {
	ours, theirs := net.Pipe()
	bash := exec.Command("bash", "--norc", "--noprofile")
	bash.Stdin, bash.Stdout, bash.Stderr = theirs, theirs, theirs
	if err := bash.Start(); err != nil {
		t.Skipf("no bash here: %v", err)
	}
	t.Cleanup(func() { _ = bash.Process.Kill(); _ = bash.Wait() })
	dir := t.TempDir()
	log, err := os.Create(filepath.Join(dir, "shell.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	s := &Shell{Timeout: 10 * time.Second, vm: &VM{t: t, dir: dir}, conn: ours, log: log, token: "CAIRNTEST", more: make(chan struct{}, 1)}
	go s.read()
	defer ours.Close()

	if _, err := s.send(shellSetup+"\n", ":", 10*time.Second); err != nil {
		t.Fatalf("set-up: %v", err)
	}
	if out := s.MustRun("echo hello; echo to stderr >&2"); out != "hello\nto stderr\n" {
		t.Errorf("Run(echo) = %q, want hello and the stderr line", out)
	}
	out, err := s.Run("printf 'partial'; exit 7")
	var exit *ExitError
	if !errors.As(err, &exit) || exit.Status != 7 || out != "partial" {
		t.Errorf("Run(exit 7) = %q, %v, want partial and an ExitError with status 7", out, err)
	}
	if out := s.MustRun("for i in 1 2 3; do\n  echo line $i\ndone"); out != "line 1\nline 2\nline 3\n" {
		t.Errorf("Run(a loop over three lines) = %q", out)
	}
	if out := s.MustRun("read x && echo read $x || echo nothing to read"); out != "nothing to read\n" {
		t.Errorf("a command read the shell's own input: %q", out)
	}
	if _, err := s.RunTimeout("sleep 2", 200*time.Millisecond); err == nil || IsExit(err) || !strings.Contains(err.Error(), "did not finish within") {
		t.Errorf("RunTimeout(sleep 2, 200ms) = %v, want a timeout", err)
	}
	if out := s.MustRun("echo after"); out != "after\n" {
		t.Errorf("Run after a timed-out command = %q, want after", out)
	}
	if _, err := s.Run(strings.Repeat("x", maxLine+1)); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("Run(a %d-byte line) = %v, want it refused", maxLine+1, err)
	}
}
