package dhcp

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/site"
)

var (
	applianceIP = netip.MustParseAddr("192.0.2.1")
	gatewayIP   = netip.MustParseAddr("192.0.2.254")
	webMAC      = mustMAC("52:54:00:00:01:01") // web-1: fixed address 192.0.2.10
	dbMAC       = mustMAC("52:54:00:00:01:02") // db-1: in the site, no fixed address
	webIP       = netip.MustParseAddr("192.0.2.10")
	poolStart   = netip.MustParseAddr("192.0.2.100")
)

func mustMAC(s string) site.MAC {
	m, err := site.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// unknownMAC is the n-th machine that is not in the site.
func unknownMAC(n int) site.MAC { return site.MAC{0x52, 0x54, 0, 0xaa, byte(n >> 8), byte(n)} }

// testSite is a site whose network is 192.0.2.0/24 on interface iface.
func testSite(mode, iface string) *site.Site {
	return &site.Site{
		Settings: site.Settings{Name: "lab", Domain: "lab.example"},
		Network: site.Network{
			Interface: iface, CIDR: netip.MustParsePrefix("192.0.2.0/24"), ApplianceIP: applianceIP, Gateway: gatewayIP,
			DNS: []netip.Addr{applianceIP}, NTP: []string{"192.0.2.1", "ntp.lab.example"}, DHCP: mode,
			DHCPRange: &site.Range{Start: poolStart, End: netip.MustParseAddr("192.0.2.199")},
		},
		Hosts: []*site.Host{
			{Name: "db-1", MAC: dbMAC},
			{Name: "web-1", MAC: webMAC, IP: webIP},
		},
	}
}

// logBuffer collects what a server logs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// unitServer is a server that is not running: tests call respond and commit the journal
// themselves, at a clock they move.
type unitServer struct {
	*Server
	store state.Store
	logs  *logBuffer
	clock time.Time
}

func newUnitServer(t testing.TB, s *site.Site) *unitServer {
	t.Helper()
	u := &unitServer{store: state.NewMemory(0), logs: &logBuffer{}, clock: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	srv, err := New(Config{Site: s, State: u.store, Boot: Boot{HTTPBase: "http://:8080"},
		Log: slog.New(slog.NewTextHandler(u.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	srv.now = func() time.Time { return u.clock }
	srv.activate(srv.want.Load())
	u.Server = srv
	return u
}

// ask answers req as received on port from a client without an address, and commits the
// leases the answer waits for.
func (u *unitServer) ask(t *testing.T, port int, req *dhcpv4.DHCPv4) *answer {
	t.Helper()
	a := u.respond(u.active.Load(), port, &net.UDPAddr{IP: net.IPv4zero, Port: dhcpv4.ClientPort}, req)
	u.journal.commit(context.Background())
	if a != nil && a.wait != nil {
		select {
		case <-a.wait.done:
		default:
			t.Fatal("the answer waits for a batch that was not committed")
		}
		if a.wait.err != nil {
			t.Fatal(a.wait.err)
		}
	}
	return a
}

func (u *unitServer) leases(t *testing.T) []state.Lease {
	t.Helper()
	var ls []state.Lease
	err := u.store.View(context.Background(), func(tx state.Tx) (err error) {
		ls, err = tx.Leases()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

// Options clients send.
var (
	optBIOS     = []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC))}
	optUEFI7    = []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64))}
	optUEFI9    = []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00009:UNDI:003016")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_BC))}
	optHTTP     = []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("HTTPClient:Arch:00016:UNDI:003001")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64_HTTP))}
	optIPXE     = append([]dhcpv4.Modifier{dhcpv4.WithUserClass("iPXE", false)}, optBIOS...)
	optARM      = []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00011:UNDI:003016")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_ARM64))}
	machineUUID = dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, append([]byte{0}, bytes.Repeat([]byte{0xab}, 16)...))
)

func discover(t *testing.T, mac site.MAC, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.NewDiscovery(net.HardwareAddr(mac[:]), mods...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func request(t *testing.T, offer *dhcpv4.DHCPv4, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.NewRequestFromOffer(offer, mods...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func slogTo(w *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
