package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cairn-appliance/cairn/site"
)

// provisioningNetwork is the systemd-networkd file the daemon writes for the site's
// provisioning interface. Its name sorts before the appliance's 50-wired.network, so that
// interface gets the appliance's static address instead of asking for one by DHCP.
const provisioningNetwork = "10-cairn-provisioning.network"

// netconf gives the site's provisioning interface the appliance's address, through
// systemd-networkd: it writes a .network file into dir for every applied site whose
// [network] differs from the last, and asks networkd to reload. Without it the interface
// runs the appliance's DHCP client like every other wired link, and the hosts have no
// appliance to reach.
type netconf struct {
	dir    string
	log    *slog.Logger
	reload func(ctx context.Context) error // networkctl reload
	settle time.Duration                   // how long to wait for the address after a reload

	mu      sync.Mutex
	last    []byte
	problem string
}

func newNetconf(dir string, log *slog.Logger) *netconf {
	return &netconf{dir: dir, log: log, reload: networkctlReload, settle: 5 * time.Second}
}

// networkFile is the .network file for nw.
func networkFile(nw site.Network) []byte {
	prefix := netip.PrefixFrom(nw.ApplianceIP, nw.CIDR.Bits())
	var b bytes.Buffer
	fmt.Fprintf(&b, `# Written by cairn daemon from site.toml's [network]: the provisioning interface, where it
# answers DHCP (network.dhcp = %q), TFTP and HTTP boot. Edit the site, not this file.
[Match]
Name=%s

[Link]
RequiredForOnline=no

[Network]
Address=%s
DHCP=no
LinkLocalAddressing=no
IPv6AcceptRA=no
ConfigureWithoutCarrier=yes
`, nw.DHCP, nw.Interface, prefix)
	return b.Bytes()
}

// Update writes the file for s's network when it changed, and reloads networkd.
func (n *netconf) Update(s *site.Site) {
	want := networkFile(s.Network)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.last == nil && n.problem == "" {
		// A daemon restarted within one boot finds the file it wrote (/run outlives it):
		// networkd has it already.
		n.last, _ = os.ReadFile(filepath.Join(n.dir, provisioningNetwork))
	}
	if bytes.Equal(want, n.last) {
		return
	}
	err := n.write(want)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = n.reload(ctx)
		cancel()
	}
	if err != nil {
		n.problem = fmt.Sprintf("configuring %s with %s: %v", s.Network.Interface, s.Network.ApplianceIP, err)
		n.log.Error("network: " + n.problem)
		return
	}
	n.last, n.problem = want, ""
	// networkd configures the link a moment after the reload: give it that moment, so that
	// DHCP and TFTP, told of the site next, find the address on the interface (an interface
	// that is not there at all gets no address by waiting).
	if _, err := net.InterfaceByName(s.Network.Interface); err == nil {
		for deadline := time.Now().Add(n.settle); holds(s.Network.Interface, s.Network.ApplianceIP) != nil && time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond)
		}
	}
	n.log.Info("network: the provisioning interface is configured", "interface", s.Network.Interface,
		"address", s.Network.ApplianceIP, "file", filepath.Join(n.dir, provisioningNetwork))
}

// Problem says why the provisioning interface is not configured, "" when it is.
func (n *netconf) Problem() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.problem
}

// write replaces the file atomically.
func (n *netconf) write(b []byte) error {
	if err := os.MkdirAll(n.dir, 0o755); err != nil { //nolint:gosec // networkd's configuration is world-readable
		return err
	}
	p := filepath.Join(n.dir, provisioningNetwork)
	tmp := filepath.Join(n.dir, "."+provisioningNetwork+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil { //nolint:gosec // as above
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// networkctlReload makes networkd read its configuration again: networkctl reload, which
// needs D-Bus, or else a restart of systemd-networkd through systemd, which does not (the
// appliance has no D-Bus; addresses stay while networkd restarts).
func networkctlReload(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, "networkctl", "reload").CombinedOutput()
	if err == nil {
		return nil
	}
	first := fmt.Errorf("networkctl reload: %w: %s", err, strings.TrimSpace(string(out)))
	out, err = exec.CommandContext(ctx, "systemctl", "try-restart", "systemd-networkd.service").CombinedOutput()
	if err != nil {
		return errors.Join(first, fmt.Errorf("systemctl try-restart systemd-networkd: %w: %s", err, strings.TrimSpace(string(out))))
	}
	return nil
}
