package netboot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/agent/initramfs"
	"github.com/cairn-appliance/cairn/agent/inventory"
)

// RebootDelay is how long the agent shows why it stopped before it reboots.
const RebootDelay = 30 * time.Second

// Init is the initramfs's /init: it never returns. It mounts the kernel's file systems,
// reads the command line, runs the mode it names (Run) and powers off or reboots.
func Init(version string) {
	mountAll()
	con := openConsoles()
	say := (&console{w: con}).say
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		say("cairn-agent: reading /proc/cmdline: %v", err)
		halt(say, Reboot, RebootDelay)
	}
	args, err := ParseCmdline(string(b))
	if err != nil {
		say("cairn-agent: %v", err)
		halt(say, Reboot, RebootDelay)
	}
	end, err := Run(context.Background(), Config{Args: args, Machine: linuxMachine{}, Console: con, Version: version})
	delay := time.Duration(0) // done: into the new OS at once
	if err != nil {
		say("cairn-agent: %v", err)
		delay = RebootDelay // time to read why
	}
	halt(say, end, delay)
}

// mountAll mounts /proc, /sys and /dev; one already mounted is left as it is.
func mountAll() {
	for _, m := range []struct{ src, dir, fstype string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
	} {
		_ = os.MkdirAll(m.dir, 0o755)
		if err := unix.Mount(m.src, m.dir, m.fstype, unix.MS_NOSUID|unix.MS_NOEXEC, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			fmt.Fprintf(os.Stderr, "cairn-agent: mounting %s on %s: %v\n", m.fstype, m.dir, err)
		}
	}
}

// openConsoles opens every console the kernel prints to (/sys/class/tty/console/active: with
// console=ttyS0 console=tty0, both the serial port and the screen, of which /dev/console is
// only the last), so that the agent's lines show wherever the kernel's do.
func openConsoles() io.Writer {
	var ws []io.Writer
	if b, err := os.ReadFile("/sys/class/tty/console/active"); err == nil {
		for _, name := range strings.Fields(string(b)) {
			if f, err := os.OpenFile("/dev/"+name, os.O_WRONLY|unix.O_NOCTTY, 0); err == nil {
				ws = append(ws, f)
			}
		}
	}
	if len(ws) == 0 {
		if f, err := os.OpenFile("/dev/console", os.O_WRONLY|unix.O_NOCTTY, 0); err == nil {
			ws = append(ws, f)
		} else {
			ws = append(ws, os.Stdout)
		}
	}
	return io.MultiWriter(ws...)
}

// halt powers off, or reboots after delay; as PID 1 it must never return.
func halt(say func(string, ...any), end End, delay time.Duration) {
	cmd, what := unix.LINUX_REBOOT_CMD_POWER_OFF, "powering off"
	if end == Reboot {
		say("cairn-agent: rebooting in %s", delay)
		time.Sleep(delay)
		cmd, what = unix.LINUX_REBOOT_CMD_RESTART, "rebooting"
	} else {
		say("cairn-agent: powering off")
	}
	unix.Sync()
	err := unix.Reboot(cmd)
	say("cairn-agent: %s: %v", what, err)
	for {
		time.Sleep(time.Hour)
	}
}

// linuxMachine is the machine the agent runs on.
type linuxMachine struct{}

// LoadModules implements Machine: the modules initramfs.LoadList names, in its order. A module
// the kernel has already (built in, or loaded) is fine; one that fails is said and skipped.
// Then it waits for the kernel's random number generator, which DHCP's transaction IDs need,
// saying so when it is not seeded yet.
func (linuxMachine) LoadModules(say func(string, ...any)) error {
	err := loadModules("/", say)
	waitRandom(say)
	return err
}

// waitRandom blocks until the kernel's random number generator is seeded. With RDRAND or a
// hardware RNG that is at once; without either (a VM with an emulated CPU and no virtio-rng)
// the kernel gathers timing jitter, which can take minutes under emulation.
func waitRandom(say func(string, ...any)) {
	b := make([]byte, 1)
	if _, err := unix.Getrandom(b, unix.GRND_NONBLOCK); !errors.Is(err, unix.EAGAIN) {
		return
	}
	start := time.Now()
	say("cairn-agent: waiting for the kernel's random number generator to be seeded (no RDRAND and no hardware RNG)")
	for {
		if _, err := unix.Getrandom(b, 0); !errors.Is(err, unix.EINTR) {
			break
		}
	}
	say("cairn-agent: the random number generator is seeded after %s", time.Since(start).Round(time.Second/10))
}

func loadModules(root string, say func(string, ...any)) error {
	dir := filepath.Join(root, initramfs.ModulesDir)
	f, err := os.Open(filepath.Join(root, initramfs.LoadList))
	if errors.Is(err, os.ErrNotExist) {
		return nil // no modules: a kernel with the drivers built in
	}
	if err != nil {
		return err
	}
	defer f.Close()
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	release := unix.ByteSliceToString(uts.Release[:])
	var loaded []string
	var errs []error
	s := bufio.NewScanner(f)
	for s.Scan() {
		p := strings.TrimSpace(s.Text())
		if p == "" {
			continue
		}
		if v, _, _ := strings.Cut(p, "/"); release != "" && v != release {
			return fmt.Errorf("the initramfs's modules are for kernel %s, this is %s: the netboot kernel and initramfs must come from the same build", v, release)
		}
		name := initramfs.ModuleName(p)
		if err := finit(filepath.Join(dir, p)); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		loaded = append(loaded, name)
	}
	if err := s.Err(); err != nil {
		errs = append(errs, err)
	}
	say("cairn-agent: loaded kernel modules %s", strings.Join(loaded, " "))
	return errors.Join(errs...)
}

func finit(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if strings.HasSuffix(path, ".xz") || strings.HasSuffix(path, ".zst") || strings.HasSuffix(path, ".gz") {
		flags = unix.MODULE_INIT_COMPRESSED_FILE
	}
	return unix.FinitModule(int(f.Fd()), "", flags) //nolint:gosec // an fd
}

// Inventory implements Machine.
func (linuxMachine) Inventory(mac string) (api.Inventory, error) {
	return inventory.Collect(inventory.Config{MAC: mac})
}

// How long the network may take to appear and to answer.
const (
	linkWait = 30 * time.Second
	dhcpWait = 90 * time.Second
)

// Network implements Machine: it waits for the card with the MAC (its driver probes it after
// the module loads), brings it up, and sets the address DHCP gives it, with the route to the
// router when there is one.
func (linuxMachine) Network(ctx context.Context, mac string) (Lease, error) {
	if lo, err := netlink.LinkByName("lo"); err == nil {
		_ = netlink.LinkSetUp(lo)
	}
	var link netlink.Link
	deadline := time.Now().Add(linkWait)
	for link == nil {
		links, err := netlink.LinkList()
		if err != nil {
			return Lease{}, fmt.Errorf("listing network interfaces: %w", err)
		}
		var seen []string
		for _, l := range links {
			a := l.Attrs()
			if a.HardwareAddr.String() == mac {
				link = l
				break
			}
			if len(a.HardwareAddr) == 6 {
				seen = append(seen, a.Name+" "+a.HardwareAddr.String())
			}
		}
		if link == nil && time.Now().After(deadline) {
			return Lease{}, fmt.Errorf("no network card has the MAC %s after %s (cards: %s); is its driver in the initramfs?", mac, linkWait, strings.Join(seen, ", "))
		}
		if link == nil {
			time.Sleep(200 * time.Millisecond)
		}
	}
	name := link.Attrs().Name
	if err := netlink.LinkSetUp(link); err != nil {
		return Lease{}, fmt.Errorf("bringing up %s: %w", name, err)
	}
	dctx, cancel := context.WithTimeout(ctx, dhcpWait)
	defer cancel()
	var lease *nclient4.Lease
	for lease == nil {
		c, err := nclient4.New(name, nclient4.WithTimeout(4*time.Second), nclient4.WithRetry(3))
		if err == nil {
			lease, err = c.Request(dctx, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("cairn-agent")))
			_ = c.Close()
		}
		if err != nil {
			if dctx.Err() != nil {
				return Lease{}, fmt.Errorf("no DHCP lease on %s within %s: %w", name, dhcpWait, err)
			}
			time.Sleep(time.Second)
		}
	}
	ack := lease.ACK
	ipn := &net.IPNet{IP: ack.YourIPAddr.To4(), Mask: ack.SubnetMask()}
	if ipn.Mask == nil {
		ipn.Mask = ipn.IP.DefaultMask()
	}
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: ipn}); err != nil {
		return Lease{}, fmt.Errorf("setting %s on %s: %w", ipn, name, err)
	}
	if routers := ack.Router(); len(routers) > 0 && ipn.Contains(routers[0]) {
		// The appliance is on the segment; the router matters only for what is not.
		_ = netlink.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: routers[0]})
	}
	return Lease{Interface: name, Address: ipn.String(), Server: ack.ServerIdentifier().String()}, nil
}
