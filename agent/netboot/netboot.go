// Package netboot is cairn-agent as /init of the netboot initramfs (package agent/initramfs):
// what a machine runs once the daemon's iPXE script has booted it (decision 7).
//
// Init, run as PID 1, mounts /proc, /sys and /dev (devtmpfs), reads the kernel command line
// (ParseCmdline; the contract is in package agent) and prints the marker line
//
//	cairn-agent: netboot MODE on MAC
//
// on every console the kernel writes to (the serial port and the screen). Then it loads the
// kernel modules the initramfs carries (in the order its build wrote, with finit_module, the
// kernel decompressing them), brings up the network card with the MAC the machine booted from
// and asks cairn's DHCP for an address, and gathers the inventory (package agent/inventory).
//
//   - discover: it reports the inventory to the agent API without a token, prints
//     "cairn-agent: discovered, reported to SERVER" and powers the machine off. When the API
//     answers 401 (a site host has its MAC now), it reboots instead: the machine boots to be
//     provisioned.
//   - provision: it reports the inventory and fetches the plan with the one-time token, prints
//     what it would write, and reports the attempt failed: this version does not write disks
//     yet. Then it powers off; the daemon boots the failed host from its disk until it is
//     provisioned again.
//
// When a step fails, the agent prints why, reports the failure when it holds a token, and
// reboots after RebootDelay, so that the next boot tries again with a new script (and token).
// The DHCP lease is not renewed: the agent lives for minutes, the lease for longer.
package netboot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cairn-appliance/cairn/agent/api"
)

// NotImplemented is the reason a provisioning attempt of this version reports.
const NotImplemented = "writing disks is not implemented in this version"

// Lease is the address the machine got on the network card it booted from.
type Lease struct {
	Interface string // eth0
	Address   string // CIDR: 10.20.0.200/24
	Server    string // the DHCP server's address
}

// Machine is what the flow needs of the machine it runs on; Init gives the real one, tests a
// fake.
type Machine interface {
	// LoadModules loads the initramfs's kernel modules and says which.
	LoadModules(say func(format string, args ...any)) error
	// Network brings up the network card with the given MAC and gets it an address by DHCP.
	Network(ctx context.Context, mac string) (Lease, error)
	// Inventory describes the machine.
	Inventory(mac string) (api.Inventory, error)
}

// Config is what Run needs.
type Config struct {
	Args    Args
	Machine Machine
	// Console receives the agent's lines.
	Console io.Writer
	// HTTP calls the agent API; nil means a client with a 30 s timeout.
	HTTP *http.Client
	// Tries bounds each call of the agent API that fails for want of an answer (default 10),
	// RetryDelay apart (default 3 s).
	Tries      int
	RetryDelay time.Duration
	// Version is cairn-agent's.
	Version string
}

// End is how a run ends: what the machine does next.
type End int

// The ends of a run.
const (
	PowerOff End = iota // the work is done (or, in this version, reported undone)
	Reboot              // boot again: the script decides what next
)

// ErrSiteHost says a discovery agent's machine is in the site now: it reboots to be
// provisioned.
var ErrSiteHost = errors.New("netboot: the machine is a site host now")

// Run does what the command line's mode says, and returns how the machine ends: PowerOff when
// the work is done, or Reboot with the error that stopped it (ErrSiteHost when a discovered
// machine was named by the site meanwhile).
func Run(ctx context.Context, cfg Config) (End, error) {
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Tries <= 0 {
		cfg.Tries = 10
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = 3 * time.Second
	}
	a := cfg.Args
	con := &console{w: cfg.Console}
	say := con.say
	say("cairn-agent: netboot %s on %s (cairn-agent %s, server %s)", a.Mode, a.MAC, cfg.Version, a.Server)
	c := &client{base: a.Server, mac: a.MAC, token: a.Token, hc: cfg.HTTP, tries: cfg.Tries, delay: cfg.RetryDelay, say: say}

	// failed reports a provisioning attempt's failure (the token dies with it) and ends.
	failed := func(step string, err error) (End, error) {
		if a.Mode == api.ModeProvision {
			if ferr := c.failed(ctx, api.Failed{Step: step, Reason: err.Error()}); ferr != nil {
				say("cairn-agent: could not report the failure to %s: %v", a.Server, ferr)
			} else {
				say("cairn-agent: reported failed to %s: %s: %v", a.Server, step, err)
			}
		}
		return Reboot, fmt.Errorf("%s: %w", step, err)
	}

	if err := cfg.Machine.LoadModules(say); err != nil {
		say("cairn-agent: loading kernel modules: %v", err) // a driver missing may not matter: go on
	}
	lease, err := cfg.Machine.Network(ctx, a.MAC)
	if err != nil {
		return Reboot, fmt.Errorf("network: %w", err) // no network, no report
	}
	say("cairn-agent: %s (%s) has %s from DHCP server %s", lease.Interface, a.MAC, lease.Address, lease.Server)
	inv, err := cfg.Machine.Inventory(a.MAC)
	if err != nil {
		return failed("inventory", err)
	}
	inv.AgentVersion = cfg.Version
	say("cairn-agent: inventory: %s", Summary(inv))

	reg, err := c.inventory(ctx, inv)
	switch {
	case a.Mode == api.ModeDiscover && isUnauthorized(err):
		say("cairn-agent: %s answers that the site names %s now: rebooting to be provisioned", a.Server, a.MAC)
		return Reboot, ErrSiteHost
	case err != nil:
		return failed("inventory", fmt.Errorf("reporting the inventory: %w", err))
	}
	if a.Mode == api.ModeDiscover {
		say("cairn-agent: discovered, reported to %s (record %s)", a.Server, reg.Host)
		return PowerOff, nil
	}
	say("cairn-agent: host %s: inventory reported to %s", reg.Host, a.Server)

	plan, err := c.plan(ctx)
	if err != nil {
		return failed("plan", fmt.Errorf("fetching the plan: %w", err))
	}
	say("cairn-agent: plan for %s (provision %d): %s", plan.Host, plan.Provision, planSummary(plan))
	if err := c.failed(ctx, api.Failed{Step: "writing", Reason: NotImplemented}); err != nil {
		return Reboot, fmt.Errorf("reporting the end of the attempt: %w", err)
	}
	say("cairn-agent: reported failed to %s: %s", a.Server, NotImplemented)
	return PowerOff, nil
}

// Summary is an inventory in a line: "2 NICs, 1 disk (vda 1.0 GiB), 1 CPU thread, 512 MiB, bios".
func Summary(inv api.Inventory) string {
	var disks []string
	for _, d := range inv.Disks {
		s := d.Name + " " + sizeIEC(d.SizeBytes)
		if d.Removable {
			s += " removable"
		}
		disks = append(disks, s)
	}
	ds := fmt.Sprintf("%d disk%s", len(inv.Disks), plural(len(inv.Disks)))
	if len(disks) > 0 {
		ds += " (" + strings.Join(disks, ", ") + ")"
	}
	return fmt.Sprintf("%d NIC%s, %s, %d CPU thread%s, %s memory, %s", len(inv.NICs), plural(len(inv.NICs)), ds,
		inv.CPU.Threads, plural(inv.CPU.Threads), sizeIEC(inv.MemoryBytes), inv.Firmware)
}

func planSummary(p api.ProvisionPlan) string {
	s := fmt.Sprintf("would write %s (%s, %s, %s) onto %s", p.Image.Artifact, p.Image.Format, sizeIEC(uint64(max(p.Image.Size, 0))), p.Image.Digest, p.Disk) //nolint:gosec // clamped
	if n := len(p.Partitions); n > 0 {
		var parts []string
		for _, pt := range p.Partitions {
			parts = append(parts, pt.Label+" "+pt.Filesystem)
		}
		s += fmt.Sprintf(", then %d partition%s (%s)", n, plural(n), strings.Join(parts, ", "))
	}
	return s + ", then a cloud-init configdrive"
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func sizeIEC(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// console writes whole lines, one at a time.
type console struct {
	mu sync.Mutex
	w  io.Writer
}

func (c *console) say(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.w != nil {
		_, _ = fmt.Fprintf(c.w, format+"\n", args...)
	}
}
