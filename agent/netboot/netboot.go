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
//     "cairn-agent: discovered, reported to SERVER ...", and reports again every PollEvery.
//     When the API answers 401 (a site host has its MAC now), it reboots: the machine boots
//     to be provisioned.
//   - provision: it reports the inventory, fetches the plan with the one-time token and
//     carries it out (provision.go): it picks the disk (package agent/disk); when the disk's
//     configdrive already records this site, host and provision counter it adopts the disk,
//     writing nothing but the new host token; otherwise it wipes the disk, streams the image
//     from the appliance's registry and checks its digest (package agent/image, which writes
//     the image's first MiB last, once the digest is right), lays out the partitions after it
//     and writes the cloud-init configdrive (package agent/configdrive), reporting progress
//     all along. Then it reports done and reboots: from then on the daemon's script boots the
//     machine from its disk.
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
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/agent/image"
)

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
	// PollEvery is how often a discovered machine reports again, to learn whether the site
	// names it now (default 30 s). ProgressEvery is how often the writing of the image is
	// reported (default 3 s).
	PollEvery, ProgressEvery time.Duration
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
	if cfg.PollEvery <= 0 {
		cfg.PollEvery = 30 * time.Second
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 3 * time.Second
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
		say("cairn-agent: discovered, reported to %s (record %s); waiting for the site to name %s", a.Server, reg.Host, a.MAC)
		return discoverWait(ctx, c, inv, cfg.PollEvery, say)
	}
	say("cairn-agent: host %s: inventory reported to %s", reg.Host, a.Server)

	plan, err := c.plan(ctx)
	if err != nil {
		return failed("plan", fmt.Errorf("fetching the plan: %w", err))
	}
	say("cairn-agent: plan for %s (provision %d): %s", plan.Host, plan.Provision, planSummary(plan))
	// Progress goes once, not retried: a lost report must not hold the writing up.
	pc := *c
	pc.tries = 1
	done, err := provision(ctx, &pc, plan, inv, say, cfg.ProgressEvery)
	if err != nil {
		say("cairn-agent: FAILED: %v", err)
		return failed(stepOf(err), errors.Unwrap(err))
	}
	if err := c.done(ctx, done); err != nil {
		// The disk is written and checked, but the appliance did not take it: the next boot
		// is a new attempt, which adopts the disk (its configdrive records this plan).
		return Reboot, fmt.Errorf("reporting done: %w", err)
	}
	if done.Adopted {
		say("cairn-agent: reported done to %s: %s adopted, not written; rebooting into it", a.Server, done.Disk)
	} else {
		say("cairn-agent: reported done to %s: %s; rebooting into the new OS", a.Server, done.Message)
	}
	return Reboot, nil
}

// discoverWait reports the inventory again every poll until the daemon answers 401: a site
// host has the MAC now, and the machine reboots to be provisioned. A machine switched off
// meanwhile simply stays discovered.
func discoverWait(ctx context.Context, c *client, inv api.Inventory, poll time.Duration, say func(string, ...any)) (End, error) {
	for {
		select {
		case <-ctx.Done():
			return PowerOff, ctx.Err()
		case <-time.After(poll):
		}
		_, err := c.inventory(ctx, inv)
		switch {
		case isUnauthorized(err):
			say("cairn-agent: %s answers that the site names %s now: rebooting to be provisioned", c.base, c.mac)
			return Reboot, ErrSiteHost
		case err != nil:
			say("cairn-agent: reporting again: %v (trying again in %s)", err, poll)
		}
	}
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
	s := fmt.Sprintf("%s (%s, %s, %s) onto %s", p.Image.Artifact, p.Image.Format, sizeIEC(uint64(max(p.Image.Size, 0))), p.Image.Digest, p.Disk) //nolint:gosec // clamped
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

func sizeIEC(n uint64) string { return image.SizeIEC(int64(min(n, math.MaxInt64))) } //nolint:gosec // clamped

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
