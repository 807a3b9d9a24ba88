package vmtest

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var runVMTests = flag.Bool("run-vm-tests", false, "run the QEMU tests (make vmtest does, through CAIRN_VMTEST=1)")

// Enabled reports whether VM tests should run: -run-vm-tests or CAIRN_VMTEST=1.
func Enabled() bool {
	return *runVMTests || os.Getenv("CAIRN_VMTEST") == "1"
}

// SkipUnlessEnabled skips t, saying how to run it, unless VM tests are enabled.
func SkipUnlessEnabled(t testing.TB) {
	t.Helper()
	if !Enabled() {
		t.Skip("VM test: run it with make vmtest (or go test ./vmtest -run-vm-tests, or CAIRN_VMTEST=1)")
	}
}

// Firmware is what the VM boots with.
type Firmware int

// The firmwares.
const (
	BIOS Firmware = iota // SeaBIOS, QEMU's default
	UEFI                 // OVMF, from Debian's ovmf package
)

func (f Firmware) String() string { return [...]string{"SeaBIOS", "OVMF"}[f] }

// Media is how the ISO is attached.
type Media int

// The ways to attach an ISO.
const (
	CDROM Media = iota // a CD-ROM drive (AHCI)
	USB                // a USB mass-storage disk on an xHCI controller, as a dd-written stick
)

func (m Media) String() string { return [...]string{"CD-ROM", "USB disk"}[m] }

// Options describe a VM.
type Options struct {
	ISO      string
	Firmware Firmware
	Media    Media
	// MemoryMiB defaults to 1024. CPUs defaults to 2 under KVM and to 1 under TCG: a guest
	// kernel that patches its own code (static keys, at boot) while another vCPU runs it can
	// trip over TCG's multi-threaded translation, seen as an "Oops: int3" in early boot.
	MemoryMiB, CPUs int
	// Forward lists guest TCP ports to reach from the host; Addr gives each one's host address.
	Forward []int
	// Kernel, when set, boots that kernel directly (QEMU's -kernel) instead of the medium's boot
	// loader. The medium stays attached, so live-boot finds its root filesystem on it.
	// KernelFromISO gives the ISO's own kernel, initramfs and command line.
	Kernel *KernelBoot
	// Shell adds a second serial port (the guest's ttyS1) on a unix socket and turns systemd's
	// debug shell on there (DebugShellArg); VM.Shell drives it. It needs Kernel, whose command
	// line carries the argument.
	Shell bool
	// DataDisk, when set, is a raw image file attached as a virtio disk (the guest's
	// /dev/vda): the appliance's data disk, or a PXE-booted machine's local disk.
	// DataDiskImage makes one.
	DataDisk string
	// DataDiskSerial is DataDisk's serial number; empty means cairn-data.
	DataDiskSerial string
	// NetBoot boots the VM from its network card first, then from DataDisk, as a machine
	// whose boot order puts the network first; ISO may then be empty.
	NetBoot bool
	// Tap, when set, is the VM's network instead of QEMU's user mode: its card is on this
	// tap device, which exists in the network namespace Netns (on a bridge there). Forward
	// must be empty then.
	Tap, Netns string
	// MAC is the network card's MAC; empty means QEMU's 52:54:00:12:34:56.
	MAC string
	// NoNICROM gives the network card no option ROM (romfile=): under OVMF the firmware's
	// own UEFI PXE boots it, as on a real machine, instead of QEMU's iPXE ROM.
	NoNICROM bool
	// Resettable lets Reset restart the guest as a reset button would. Without it a guest
	// that reboots ends QEMU (-no-reboot), so that a crash ends the test at once.
	Resettable bool
}

// OVMF firmware files (Debian's ovmf package).
var (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

const qemuBin = "qemu-system-x86_64"

// VM is one QEMU process.
type VM struct {
	t     testing.TB
	opts  Options
	dir   string
	ports map[int]int
	cmd   *exec.Cmd
	exit  chan error

	sock string // the shell's unix socket, when Options.Shell
	qmp  string // QMP's unix socket, when Options.Resettable

	mu      sync.Mutex
	matched int // serial log offset after the last WaitSerial match
	started time.Time
}

// New prepares a VM for t: its directory, its forwarded ports and its firmware. It skips t
// unless VM tests are enabled and fails it when QEMU or a firmware file is missing.
func New(t testing.TB, opts Options) *VM {
	t.Helper()
	SkipUnlessEnabled(t)
	if _, err := exec.LookPath(qemuBin); err != nil {
		t.Fatalf("%s is not installed (Debian package qemu-system-x86; scripts/deps.sh installs it)", qemuBin)
	}
	if opts.Firmware == UEFI {
		for _, f := range []string{ovmfCode, ovmfVars} {
			if _, err := os.Stat(f); err != nil {
				t.Fatalf("%s is missing (Debian package ovmf; scripts/deps.sh installs it)", f)
			}
		}
	}
	if _, err := os.Stat(opts.ISO); err != nil && !(opts.NetBoot && opts.ISO == "") {
		t.Fatalf("vmtest: ISO %q: %v", opts.ISO, err)
	}
	if opts.Tap != "" && len(opts.Forward) > 0 {
		t.Fatal("vmtest: Options.Forward needs QEMU's user-mode network; a VM on Options.Tap has none")
	}
	if opts.MemoryMiB == 0 {
		opts.MemoryMiB = 1024
	}
	if opts.Shell && opts.Kernel == nil {
		t.Fatal("vmtest: Options.Shell needs Options.Kernel: the debug shell is turned on from the kernel command line")
	}
	vm := &VM{t: t, opts: opts, dir: keptDir(t, "vm"), ports: map[int]int{}}
	for _, p := range opts.Forward {
		vm.ports[p] = freePort(t)
	}
	if opts.Shell {
		vm.sock = shellSocket(t, vm.dir)
	}
	t.Cleanup(vm.Stop)
	return vm
}

// keptDir makes a directory for t's files that survives a failed test, for its logs, or every
// test with CAIRN_VMTEST_KEEP=1. CAIRN_VMTEST_LOGS says where (default: the temp directory).
func keptDir(t testing.TB, what string) string {
	t.Helper()
	name := regexp.MustCompile(`[^A-Za-z0-9_-]+`).ReplaceAllString(t.Name(), "_")
	dir, err := os.MkdirTemp(os.Getenv("CAIRN_VMTEST_LOGS"), "cairn-vmtest-"+name+"-"+what+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("CAIRN_VMTEST_KEEP") == "1" {
			t.Logf("vmtest: kept %s for its logs", dir)
			return
		}
		_ = os.RemoveAll(dir) //nolint:gosec // G703: the directory MkdirTemp made
	})
	return dir
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Dir is the VM's directory: serial.log, qemu.log and the firmware variables.
func (vm *VM) Dir() string { return vm.dir }

// SerialLog is the path of the captured serial console.
func (vm *VM) SerialLog() string { return filepath.Join(vm.dir, "serial.log") }

// Addr is the host address (127.0.0.1:port) forwarded to guestPort.
func (vm *VM) Addr(guestPort int) string {
	p, ok := vm.ports[guestPort]
	if !ok {
		vm.t.Fatalf("vmtest: guest port %d is not forwarded; list it in Options.Forward", guestPort)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
}

// Args returns QEMU's command line for this VM.
func (vm *VM) Args(accel string) []string {
	o := vm.opts
	cpus := o.CPUs
	if cpus == 0 {
		cpus = 2
		if strings.HasPrefix(accel, "tcg") {
			cpus = 1
		}
	}
	machine := "q35"
	if o.NetBoot {
		// SeaBIOS then copies the screen to the serial port: iPXE's lines show in serial.log.
		machine += ",graphics=off"
	}
	args := []string{
		"-machine", machine, "-accel", accel, "-m", strconv.Itoa(o.MemoryMiB), "-smp", strconv.Itoa(cpus),
		"-display", "none", "-monitor", "none",
		"-chardev", "file,id=ser0,path=" + vm.SerialLog(), "-serial", "chardev:ser0",
	}
	if o.Resettable {
		args = append(args, "-qmp", "unix:"+vm.QMPSocket()+",server=on,wait=off")
	} else {
		args = append(args, "-no-reboot")
	}
	if o.Shell {
		// server=on,wait=off: QEMU listens and boots at once; the test connects when it likes.
		args = append(args, "-chardev", "socket,id=ser1,path="+vm.ShellSocket()+",server=on,wait=off", "-serial", "chardev:ser1")
	}
	bootindex := ",bootindex=0"
	if k := o.Kernel; k != nil {
		cmdline := k.Cmdline
		if o.Shell {
			cmdline += " " + DebugShellArg
		}
		args = append(args, "-kernel", k.Kernel, "-initrd", k.Initrd, "-append", cmdline)
		bootindex = "" // QEMU boots the kernel from an option ROM that holds boot index 0
	}
	if o.Firmware == UEFI {
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+ovmfCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+filepath.Join(vm.dir, "OVMF_VARS.fd"))
	}
	if o.NetBoot {
		bootindex = ",bootindex=1" // after the network card
	}
	switch {
	case o.ISO == "":
	case o.Media == CDROM:
		args = append(args, "-drive", "if=none,id=boot,media=cdrom,readonly=on,format=raw,file="+o.ISO,
			"-device", "ide-cd,drive=boot"+bootindex)
	case o.Media == USB:
		// snapshot=on: the guest may write to its "stick" without touching the ISO.
		args = append(args, "-device", "qemu-xhci,id=xhci",
			"-drive", "if=none,id=boot,format=raw,snapshot=on,file="+o.ISO,
			"-device", "usb-storage,bus=xhci.0,drive=boot"+bootindex)
	}
	if o.DataDisk != "" {
		serial, diskIndex := o.DataDiskSerial, ""
		if serial == "" {
			serial = "cairn-data"
		}
		if o.NetBoot {
			diskIndex = ",bootindex=2" // after the network card and the ISO
		}
		args = append(args, "-drive", "if=none,id=data,format=raw,cache=writeback,file="+o.DataDisk,
			"-device", "virtio-blk-pci,drive=data,serial="+serial+diskIndex)
	}
	netdev := "user,id=net0,restrict=on"
	for _, gp := range o.Forward {
		netdev += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", vm.ports[gp], gp)
	}
	if o.Tap != "" {
		// The tap exists already (on a bridge); QEMU runs no script on it.
		netdev = "tap,id=net0,ifname=" + o.Tap + ",script=no,downscript=no"
	}
	nic := "virtio-net-pci,netdev=net0"
	if o.MAC != "" {
		nic += ",mac=" + o.MAC
	}
	if o.NoNICROM {
		nic += ",romfile="
	}
	if o.NetBoot {
		nic += ",bootindex=0"
		if o.Firmware == UEFI {
			// OVMF tries PXE over IPv6 too, a minute of waiting on a network that has none.
			args = append(args, "-fw_cfg", "name=opt/org.tianocore/IPv6Support,string=no")
		}
		// A network-booted agent needs random numbers at once (DHCP); TCG's CPU has no RDRAND.
		args = append(args, "-device", "virtio-rng-pci")
	}
	return append(args, "-netdev", netdev, "-device", nic)
}

// Start boots the VM.
func (vm *VM) Start() {
	vm.t.Helper()
	if vm.opts.Firmware == UEFI {
		b, err := os.ReadFile(ovmfVars)
		if err != nil {
			vm.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(vm.dir, "OVMF_VARS.fd"), b, 0o600); err != nil { //nolint:gosec // G703: our own directory
			vm.t.Fatal(err)
		}
	}
	accel := Accel(vm.t)
	args := vm.Args(accel)
	logf, err := os.Create(filepath.Join(vm.dir, "qemu.log"))
	if err != nil {
		vm.t.Fatal(err)
	}
	fmt.Fprintf(logf, "%s %s\n", qemuBin, strings.Join(args, " "))
	vm.cmd = exec.Command(qemuBin, args...) //nolint:gosec // G204: QEMU with arguments we built
	if vm.opts.Netns != "" {
		// ip netns exec execs QEMU in the namespace: the process is QEMU's, to kill as such.
		vm.cmd = exec.Command("ip", append([]string{"netns", "exec", vm.opts.Netns, qemuBin}, args...)...) //nolint:gosec // G204: as above
	}
	vm.cmd.Stdout, vm.cmd.Stderr = logf, logf
	if err := vm.cmd.Start(); err != nil {
		_ = logf.Close()
		vm.t.Fatalf("starting QEMU: %v", err)
	}
	vm.started = time.Now()
	vm.exit = make(chan error, 1)
	go func() { vm.exit <- vm.cmd.Wait(); _ = logf.Close() }()
	what, how := filepath.Base(vm.opts.ISO), fmt.Sprintf("with %s from a %s", vm.opts.Firmware, vm.opts.Media)
	switch {
	case vm.opts.Kernel != nil:
		how = fmt.Sprintf("through its kernel, directly, with the ISO on a %s", vm.opts.Media)
	case vm.opts.NetBoot:
		what, how = "a machine "+vm.opts.MAC, fmt.Sprintf("with %s from its network card", vm.opts.Firmware)
		if vm.opts.NoNICROM {
			how += " (the firmware's own PXE)"
		}
	}
	vm.t.Logf("vmtest: booting %s %s (%s); logs in %s", what, how, accel, vm.dir)
}

// QMPSocket is the unix socket of QEMU's machine protocol, when Options.Resettable.
func (vm *VM) QMPSocket() string {
	if vm.qmp == "" {
		vm.qmp = shortSocket(vm.t, vm.dir, "qmp.sock")
	}
	return vm.qmp
}

// Reset presses the VM's reset button (QMP system_reset): the guest restarts at once, with no
// shutdown, as after a power cut; what its disks had not written is lost. It needs
// Options.Resettable.
func (vm *VM) Reset() {
	vm.t.Helper()
	if !vm.opts.Resettable {
		vm.t.Fatal("vmtest: VM.Reset needs Options.Resettable")
	}
	conn, err := net.DialTimeout("unix", vm.QMPSocket(), 5*time.Second)
	if err != nil {
		vm.t.Fatalf("vmtest: connecting to QMP: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	dec := json.NewDecoder(conn)
	var greeting map[string]any
	if err := dec.Decode(&greeting); err != nil {
		vm.t.Fatalf("vmtest: QMP greeting: %v", err)
	}
	for _, cmd := range []string{"qmp_capabilities", "system_reset"} {
		if _, err := fmt.Fprintf(conn, "{\"execute\": %q}\n", cmd); err != nil {
			vm.t.Fatalf("vmtest: QMP %s: %v", cmd, err)
		}
		for { // skip events until the command's answer
			var msg map[string]any
			if err := dec.Decode(&msg); err != nil {
				vm.t.Fatalf("vmtest: QMP %s: %v", cmd, err)
			}
			if e, ok := msg["error"]; ok {
				vm.t.Fatalf("vmtest: QMP %s: %v", cmd, e)
			}
			if _, ok := msg["return"]; ok {
				break
			}
		}
	}
	vm.mu.Lock()
	vm.started = time.Now()
	vm.mu.Unlock()
	vm.t.Logf("vmtest: reset the VM (QMP system_reset)")
}

// DataDiskImage makes a blank raw image of size bytes in t's directory for Options.DataDisk.
func DataDiskImage(t testing.TB, size int64) string {
	t.Helper()
	p := filepath.Join(keptDir(t, "data"), "data.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return p
}

// Stop ends the VM (a no-op when it is not running).
func (vm *VM) Stop() {
	if vm.cmd == nil || vm.cmd.Process == nil {
		return
	}
	select {
	case err := <-vm.exit:
		vm.t.Logf("vmtest: QEMU had exited: %v", err)
	default:
		_ = vm.cmd.Process.Kill()
		<-vm.exit //nolint:errcheck // killed: its exit status says so and nothing more
	}
	vm.cmd = nil
}

// WaitSerial waits until a serial console line after the previous match contains want, and
// returns that line. It fails the test when timeout passes or QEMU exits first, showing the
// console's last lines.
func (vm *VM) WaitSerial(want string, timeout time.Duration) string {
	vm.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(vm.SerialLog())
		vm.mu.Lock()
		from := vm.matched
		vm.mu.Unlock()
		if from <= len(b) {
			if i := bytes.Index(b[from:], []byte(want)); i >= 0 {
				start := bytes.LastIndexByte(b[:from+i], '\n') + 1
				end := bytes.IndexByte(b[from+i:], '\n')
				if end < 0 {
					end = len(b) - from - i
				}
				vm.mu.Lock()
				vm.matched = from + i + end
				vm.mu.Unlock()
				line := strings.TrimSpace(string(b[start : from+i+end]))
				vm.t.Logf("vmtest: serial after %s: %s", time.Since(vm.started).Round(time.Second/10), line)
				return line
			}
		}
		select {
		case err := <-vm.exit:
			vm.exit <- err
			vm.t.Fatalf("vmtest: QEMU exited (%v) before the serial console showed %q; last lines:\n%s", err, want, tail(b, 30))
		default:
		}
		if time.Now().After(deadline) {
			vm.t.Fatalf("vmtest: the serial console did not show %q within %s; last lines:\n%s", want, timeout, tail(b, 30))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// WaitExit waits until QEMU ends by itself (the guest powered off, or rebooted without
// Resettable) and returns how long after power-on. It fails the test when timeout passes
// first, showing the console's last lines.
func (vm *VM) WaitExit(timeout time.Duration) time.Duration {
	vm.t.Helper()
	select {
	case err := <-vm.exit:
		vm.exit <- err // for Stop
		up := vm.Uptime()
		vm.t.Logf("vmtest: QEMU ended %s after power-on (%v)", up.Round(time.Second/10), err)
		return up
	case <-time.After(timeout):
		b, _ := os.ReadFile(vm.SerialLog())
		vm.t.Fatalf("vmtest: the VM was still running %s later; last lines:\n%s", timeout, tail(b, 30))
		return 0
	}
}

// Uptime is how long ago Start booted the VM.
func (vm *VM) Uptime() time.Duration { return time.Since(vm.started) }

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
