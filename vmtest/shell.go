package vmtest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// DebugShellArg turns on systemd's debug shell (debug-shell.service, a root bash started early
// in boot, with no login) on the guest's second serial port. It is for test VMs only: whoever
// holds that port owns the machine.
const DebugShellArg = "systemd.debug_shell=ttyS1"

// KernelBoot is a kernel, its initramfs and its command line, for QEMU to boot directly.
type KernelBoot struct {
	Kernel, Initrd, Cmdline string
}

// KernelFromISO extracts the kernel and initramfs of the ISO's BIOS boot menu entry
// (/isolinux/isolinux.cfg) into dir and returns them with the command line that entry gives,
// so that a VM boots the ISO's own system, with arguments of its own added, as the boot menu
// would have booted it.
func KernelFromISO(iso, dir string) (KernelBoot, error) {
	cfgPath := filepath.Join(dir, "isolinux.cfg")
	if err := xorrisoExtract(iso, "/isolinux/isolinux.cfg", cfgPath); err != nil {
		return KernelBoot{}, err
	}
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		return KernelBoot{}, err
	}
	kernel, initrd, cmdline, err := parseIsolinux(string(cfg))
	if err != nil {
		return KernelBoot{}, fmt.Errorf("the boot menu of %s: %w", iso, err)
	}
	kb := KernelBoot{Kernel: filepath.Join(dir, "kernel"), Initrd: filepath.Join(dir, "initrd"), Cmdline: cmdline}
	if err := xorrisoExtract(iso, kernel, kb.Kernel); err != nil {
		return KernelBoot{}, err
	}
	if err := xorrisoExtract(iso, initrd, kb.Initrd); err != nil {
		return KernelBoot{}, err
	}
	return kb, nil
}

func xorrisoExtract(iso, isoPath, dst string) error {
	out, err := exec.Command("xorriso", "-osirrox", "on", "-indev", iso, "-extract", isoPath, dst).CombinedOutput() //nolint:gosec // G204: xorriso with paths we chose
	if err != nil {
		return fmt.Errorf("extracting %s from %s with xorriso (Debian package xorriso): %w\n%s", isoPath, iso, err, bytes.TrimSpace(out))
	}
	return nil
}

// parseIsolinux returns the kernel, the initramfs and the rest of the command line of the
// DEFAULT entry of an isolinux.cfg (or of its first entry when there is no DEFAULT).
func parseIsolinux(cfg string) (kernel, initrd, cmdline string, err error) {
	type entry struct{ kernel, appendLine string }
	var (
		def     string
		order   []string
		entries = map[string]*entry{}
		cur     *entry
	)
	for _, line := range strings.Split(cfg, "\n") {
		key, val, _ := strings.Cut(strings.TrimSpace(line), " ")
		val = strings.TrimSpace(val)
		switch strings.ToUpper(key) {
		case "DEFAULT":
			def = val
		case "LABEL":
			cur = &entry{}
			entries[val] = cur
			order = append(order, val)
		case "KERNEL", "LINUX":
			if cur != nil {
				cur.kernel = val
			}
		case "APPEND":
			if cur != nil {
				cur.appendLine = val
			}
		}
	}
	if def == "" && len(order) > 0 {
		def = order[0]
	}
	e := entries[def]
	if e == nil || e.kernel == "" {
		return "", "", "", fmt.Errorf("isolinux.cfg has no entry %q with a KERNEL line", def)
	}
	var args []string
	for _, a := range strings.Fields(e.appendLine) {
		if v, ok := strings.CutPrefix(a, "initrd="); ok {
			initrd = v
			continue
		}
		args = append(args, a)
	}
	if initrd == "" {
		return "", "", "", fmt.Errorf("isolinux.cfg entry %q names no initrd= on its APPEND line", def)
	}
	return e.kernel, initrd, strings.Join(args, " "), nil
}

// maxLine is the longest line Run sends; the guest's tty takes 4095 bytes at most.
const maxLine = 3000

// maxSocketPath is the longest path a unix socket address holds (sun_path, less its NUL).
const maxSocketPath = 107

// shellSocket names the shell's socket in dir, or in a short directory of its own when dir's
// path is too long for a socket address.
func shellSocket(t testing.TB, dir string) string { return shortSocket(t, dir, "shell.sock") }

// shortSocket names a unix socket in dir, or in a short directory of its own when dir's path
// is too long for a socket address.
func shortSocket(t testing.TB, dir, name string) string {
	t.Helper()
	if p := filepath.Join(dir, name); len(p) <= maxSocketPath {
		return p
	}
	short, err := os.MkdirTemp("", "cairn-sock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(short) })
	return filepath.Join(short, name)
}

// ShellSocket is the unix socket QEMU serves the guest's second serial port on.
func (vm *VM) ShellSocket() string {
	if vm.sock != "" {
		return vm.sock
	}
	return filepath.Join(vm.dir, "shell.sock")
}

// Shell is a root shell in the guest: systemd's debug shell on its second serial port. Run
// sends one command at a time and reads its output and exit status back between markers
// that only the command's own printf can produce, so echoed input, prompts and whatever
// the shell wrote before never pass for output. Everything it sends and reads goes to
// shell.log in the VM's directory.
type Shell struct {
	// Timeout bounds each Run; New sets 60 s.
	Timeout time.Duration

	vm    *VM
	conn  net.Conn
	token string // per shell, so that no earlier output matches a marker
	log   *os.File

	run sync.Mutex // one command at a time
	n   int

	mu      sync.Mutex
	out     []byte // what the guest wrote and no Run has consumed yet, less \r
	readErr error
	more    chan struct{} // a token whenever out grows or reading ends
}

// shellSetup makes the debug shell fit for a program to drive: no line editing (readline
// would echo by itself), no echo, no prompts, no pager, no colours.
const shellSetup = "set +o emacs +o vi; stty -echo 2>/dev/null; PS1= PS2=; unset PROMPT_COMMAND; " +
	"export SYSTEMD_PAGER= PAGER=cat SYSTEMD_COLORS=0 TERM=dumb"

// Shell connects to the guest's debug shell (Options.Shell) and waits, up to timeout, until
// it answers. It fails the test when it does not.
func (vm *VM) Shell(timeout time.Duration) *Shell {
	vm.t.Helper()
	if !vm.opts.Shell {
		vm.t.Fatal("vmtest: VM.Shell needs Options.Shell")
	}
	deadline := time.Now().Add(timeout)
	var (
		conn net.Conn
		err  error
	)
	for {
		if conn, err = net.Dial("unix", vm.ShellSocket()); err == nil {
			break
		}
		if time.Now().After(deadline) {
			vm.t.Fatalf("vmtest: connecting to the guest's second serial port %s: %v", vm.ShellSocket(), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Appended to: a VM that is reset gets a new shell, and the log keeps both.
	log, err := os.OpenFile(filepath.Join(vm.dir, "shell.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644) //nolint:gosec // G302: a test log
	if err != nil {
		_ = conn.Close()
		vm.t.Fatal(err)
	}
	tok := make([]byte, 4)
	_, _ = rand.Read(tok)
	s := &Shell{Timeout: 60 * time.Second, vm: vm, conn: conn, log: log,
		token: "CAIRN" + strings.ToUpper(hex.EncodeToString(tok)), more: make(chan struct{}, 1)}
	go s.read()
	vm.t.Cleanup(func() { _ = s.conn.Close(); _ = s.log.Close() })

	// The shell starts early in boot and reads the port only once it runs: until then what is
	// sent is lost. Send the set-up until one answers; any that arrive late do no harm. The
	// set-up goes unframed: a framed command runs in a subshell, and its stdin is not the tty.
	for {
		wait := min(5*time.Second, time.Until(deadline))
		_, err := s.send(shellSetup+"\n", ":", wait)
		if err == nil {
			vm.t.Logf("vmtest: the guest's debug shell answers, %s after power-on", vm.Uptime().Round(time.Second/10))
			return s
		}
		if time.Now().After(deadline) || s.broken() != nil {
			vm.t.Fatalf("vmtest: the debug shell on the guest's second serial port did not answer within %s (%v); is %s on the kernel command line?\nserial console, last lines:\n%s",
				timeout, err, DebugShellArg, vm.serialTail(30))
		}
	}
}

// Close lets go of the guest's second serial port; QEMU serves one client at a time, so a
// VM that was reset is reached again with Close, then VM.Shell.
func (s *Shell) Close() { _ = s.conn.Close() }

func (s *Shell) read() {
	buf := make([]byte, 32<<10)
	for {
		n, err := s.conn.Read(buf)
		if n > 0 {
			_, _ = s.log.Write(buf[:n])
			s.mu.Lock()
			s.out = append(s.out, bytes.ReplaceAll(buf[:n], []byte("\r"), nil)...)
			s.mu.Unlock()
		}
		if err != nil {
			s.mu.Lock()
			s.readErr = err
			s.mu.Unlock()
		}
		select {
		case s.more <- struct{}{}:
		default:
		}
		if err != nil {
			return
		}
	}
}

func (s *Shell) broken() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.readErr
}

// ExitError is a command that ran in the guest and exited with a non-zero status.
type ExitError struct {
	Cmd    string
	Status int
	Output string
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("guest command %q exited with status %d; its output:\n%s", e.Cmd, e.Status, e.Output)
}

// Run runs cmd (one or more lines of bash) in the guest and returns what it wrote to stdout
// and stderr. It runs in a subshell of its own (cd and variables do not carry over to the
// next command) with stdin from /dev/null. A non-zero exit status is an *ExitError; no
// answer within s.Timeout is an error with whatever the shell wrote meanwhile.
func (s *Shell) Run(cmd string) (string, error) { return s.send("", cmd, s.Timeout) }

// RunTimeout is Run with its own timeout.
func (s *Shell) RunTimeout(cmd string, timeout time.Duration) (string, error) {
	return s.send("", cmd, timeout)
}

// send writes prefix as it is, then cmd framed, and waits for cmd's answer.
func (s *Shell) send(prefix, cmd string, timeout time.Duration) (string, error) {
	s.run.Lock()
	defer s.run.Unlock()
	s.n++
	line := prefix + frame(s.token, s.n, cmd)
	for _, l := range strings.Split(line, "\n") {
		if len(l) > maxLine {
			// The tty hands the shell lines of at most 4095 bytes and cuts longer ones.
			return "", fmt.Errorf("vmtest: guest command %.60q... has a line of %d bytes, too long for the serial shell; keep lines under %d", cmd, len(l), maxLine)
		}
	}
	_, _ = fmt.Fprintf(s.log, "\n>>> %s\n", cmd)
	_ = s.conn.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := s.conn.Write([]byte(line)); err != nil {
		return "", fmt.Errorf("vmtest: sending %q to the guest's shell: %w", cmd, err)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		out, status, used, ok := answer(s.out, s.token, s.n)
		if ok {
			s.out = s.out[used:]
		}
		pending, readErr := string(s.out), s.readErr
		s.mu.Unlock()
		switch {
		case ok && status != 0:
			return out, &ExitError{Cmd: cmd, Status: status, Output: out}
		case ok:
			return out, nil
		case readErr != nil:
			return "", fmt.Errorf("vmtest: the guest's shell went away while running %q: %w; it wrote:\n%s", cmd, readErr, lastLines(pending, 40))
		}
		select {
		case <-s.more:
		case <-timer.C:
			return "", fmt.Errorf("vmtest: guest command %q did not finish within %s; the shell wrote:\n%s", cmd, timeout, lastLines(pending, 40))
		}
	}
}

// MustRun runs cmd and returns its output, failing the test with the output and the serial
// console's last lines when it fails.
func (s *Shell) MustRun(cmd string) string {
	s.vm.t.Helper()
	out, err := s.Run(cmd)
	if err != nil {
		s.vm.t.Fatalf("%v\nserial console, last lines:\n%s", err, s.vm.serialTail(20))
	}
	return out
}

// frame wraps cmd for the shell: a begin marker, cmd with stdout and stderr through a pipe
// (so that systemctl and journalctl see no terminal: no pager, no ellipsis), then an end
// marker with cmd's exit status. The markers are split in the line sent (printf's format
// joins them), so an echo of the line never matches one.
func frame(token string, id int, cmd string) string {
	return fmt.Sprintf("printf '%%s-%%d-B\\n' %s %d; {\n%s\n} </dev/null 2>&1 | cat; printf '\\n%%s-%%d-E %%s\\n' %s %d \"${PIPESTATUS[0]}\"\n",
		token, id, cmd, token, id)
}

// answer finds the framed answer of command id in out: its output, its exit status and how
// many bytes of out it ends at. ok is false until the whole answer is there.
func answer(out []byte, token string, id int) (output string, status, used int, ok bool) {
	begin := []byte(fmt.Sprintf("%s-%d-B\n", token, id))
	b := bytes.Index(out, begin)
	if b < 0 {
		return "", 0, 0, false
	}
	rest := out[b+len(begin):]
	end := []byte(fmt.Sprintf("\n%s-%d-E ", token, id))
	e := bytes.Index(rest, end)
	if e < 0 {
		return "", 0, 0, false
	}
	tail := rest[e+len(end):]
	nl := bytes.IndexByte(tail, '\n')
	if nl < 0 {
		return "", 0, 0, false
	}
	status, err := strconv.Atoi(string(tail[:nl]))
	if err != nil {
		status = -1
	}
	used = b + len(begin) + e + len(end) + nl + 1
	return string(rest[:e]), status, used, true
}

// serialTail is the serial console's last n lines.
func (vm *VM) serialTail(n int) string {
	b, _ := os.ReadFile(vm.SerialLog())
	return tail(b, n)
}

func lastLines(s string, n int) string { return tail([]byte(s), n) }

// IsExit reports whether err is a guest command's non-zero exit (and not a timeout or a
// broken shell).
func IsExit(err error) bool {
	var e *ExitError
	return errors.As(err, &e)
}
