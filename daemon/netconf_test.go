package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-appliance/cairn/site"
)

func testNetwork(iface, ip string) *site.Site {
	return &site.Site{Network: site.Network{Interface: iface, CIDR: netip.MustParsePrefix("10.20.0.0/24"),
		ApplianceIP: netip.MustParseAddr(ip), DHCP: "full"}}
}

// TestNetconf: the provisioning interface's networkd file says the site's interface and the
// appliance's address with the CIDR's length, is written again (and networkd reloaded) only
// when the network changes, and a failing reload is a problem that says so.
func TestNetconf(t *testing.T) {
	dir := t.TempDir()
	n := newNetconf(dir, slog.New(slog.DiscardHandler))
	reloads := 0
	var fail error
	n.reload = func(context.Context) error { reloads++; return fail }
	n.settle = 0

	n.Update(testNetwork("lo", "127.0.0.1")) // lo holds the address: no wait
	b, err := os.ReadFile(filepath.Join(dir, provisioningNetwork))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"[Match]\nName=lo\n", "Address=127.0.0.1/24\n", "DHCP=no\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the .network file lacks %q:\n%s", want, b)
		}
	}
	n.Update(testNetwork("lo", "127.0.0.1"))
	if reloads != 1 {
		t.Errorf("networkd reloaded %d times for one network, want 1", reloads)
	}
	if n.Problem() != "" {
		t.Errorf("Problem() = %q after a good reload", n.Problem())
	}

	fail = errors.New("networkctl reload: exit status 1")
	n.Update(testNetwork("lo", "127.0.0.2"))
	if p := n.Problem(); !strings.Contains(p, "configuring lo with 127.0.0.2") || !strings.Contains(p, "networkctl reload") {
		t.Errorf("Problem() after a failed reload = %q", p)
	}
	fail = nil
	n.Update(testNetwork("lo", "127.0.0.2")) // tried again: the last good one is not this
	if reloads != 3 || n.Problem() != "" {
		t.Errorf("after a failed reload the same network is not tried again: %d reloads, problem %q", reloads, n.Problem())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("the directory holds %d entries, want the one file (no temporary left)", len(ents))
	}

	// A daemon restarted within the boot finds its file and reloads nothing.
	again := newNetconf(dir, slog.New(slog.DiscardHandler))
	again.reload = func(context.Context) error { reloads++; return nil }
	again.Update(testNetwork("lo", "127.0.0.2"))
	if reloads != 3 {
		t.Errorf("a restarted daemon reloaded networkd for the network it had configured (%d reloads)", reloads)
	}
}
