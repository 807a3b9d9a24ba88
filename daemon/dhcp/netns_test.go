package dhcp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/site"
)

// The tests in this file run cairn on real sockets in network namespaces (see lab): as root
// only.

// newClient makes a DHCP client in the clients' namespace, on iface, with the given MAC.
func newClient(t testing.TB, l *lab, iface string, mac site.MAC, opts ...nclient4.ClientOpt) *nclient4.Client {
	t.Helper()
	var c *nclient4.Client
	err := inNetns(l.cli, func() (err error) {
		c, err = nclient4.New(iface, append([]nclient4.ClientOpt{nclient4.WithHWAddr(mac[:]), nclient4.WithTimeout(time.Second), nclient4.WithRetry(2)}, opts...)...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func openState(t testing.TB, path string) *state.Bolt {
	t.Helper()
	st, err := state.Open(path, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func dora(t *testing.T, c *nclient4.Client, mods ...dhcpv4.Modifier) *nclient4.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lease, err := c.Request(ctx, mods...)
	if err != nil {
		t.Fatalf("DORA: %v", err)
	}
	return lease
}

func TestFullModeOnTheWire(t *testing.T) {
	l := newLab(t)
	path := filepath.Join(t.TempDir(), "state.db")
	st := openState(t, path)
	cfg := Config{Site: testSite(ModeFull, "site0"), State: st, Boot: Boot{HTTPBase: "http://:8080"}}
	_, stop := runServer(t, l, cfg)
	wire := sniff(t, l.srv, "site0")

	t.Run("a reserved host gets its site address", func(t *testing.T) {
		lease := dora(t, newClient(t, l, "cli0", webMAC))
		ack := lease.ACK
		if addr(ack.YourIPAddr) != webIP || ack.HostName() != "web-1" || ack.DomainName() != "lab.example" {
			t.Errorf("ACK: %s", ack.Summary())
		}
		checkNetworkOptions(t, ack)
		if ack.BootFileName != "" {
			t.Errorf("an ordinary client got boot file %q", ack.BootFileName)
		}
		// No broadcast flag: the OFFER went to the offered address, at the client's MAC.
		offer := wire.waitSent(func(p sniffed) bool {
			return p.msg.MessageType() == dhcpv4.MessageTypeOffer && addr(p.msg.YourIPAddr) == webIP
		})
		if offer == nil || offer.dst.Addr() != webIP || offer.dstMAC.String() != webMAC.String() {
			t.Errorf("the OFFER went to %+v, want %v at %v", offer, webIP, webMAC)
		}
	})

	var poolIP netip.Addr
	t.Run("an unknown machine gets a pool address, kept in the state", func(t *testing.T) {
		lease := dora(t, newClient(t, l, "cli0", unknownMAC(1)), dhcpv4.WithBroadcast(true))
		poolIP = addr(lease.ACK.YourIPAddr)
		if poolIP != poolStart {
			t.Fatalf("got %v, want the lowest of the range, %v", poolIP, poolStart)
		}
		var found bool
		_ = st.View(context.Background(), func(tx state.Tx) error {
			l, ok, err := tx.Lease(unknownMAC(1))
			found = ok && err == nil && l.IP == poolIP
			return nil
		})
		if !found {
			t.Error("the lease is not in the state")
		}
		wire.waitSent(func(p sniffed) bool {
			return p.msg.MessageType() == dhcpv4.MessageTypeAck && p.msg.ClientHWAddr.String() == unknownMAC(1).String()
		})
		for _, p := range wire.sent() {
			if p.msg.ClientHWAddr.String() == unknownMAC(1).String() && p.dst.Addr() != netip.MustParseAddr("255.255.255.255") {
				t.Errorf("a client that asked for broadcast was answered at %v", p.dst)
			}
		}
	})

	for i, tc := range []struct {
		name string
		mods []dhcpv4.Modifier
		file string
	}{
		{"BIOS PXE (93 = 0)", optBIOS, "undionly.kpxe"},
		{"UEFI x64 PXE (93 = 7)", optUEFI7, "ipxe.efi"},
		{"UEFI PXE (93 = 9)", optUEFI9, "ipxe.efi"},
		{"UEFI HTTP boot (93 = 16, HTTPClient)", optHTTP, "http://192.0.2.1:8080/boot/ipxe.efi"},
		{"iPXE (user class)", optIPXE, "http://192.0.2.1:8080/boot/ipxe?mac=" + unknownMAC(10+4).String() + "&platform=${platform}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mac := unknownMAC(10 + i)
			lease := dora(t, newClient(t, l, "cli0", mac), append(tc.mods, dhcpv4.WithBroadcast(true), machineUUID)...)
			for _, m := range []*dhcpv4.DHCPv4{lease.Offer, lease.ACK} {
				if m.BootFileName != tc.file || addr(m.ServerIPAddr) != applianceIP || !addr(m.YourIPAddr).IsValid() {
					t.Errorf("%s: file %q, next-server %v, address %v; want %q from %v", m.MessageType(), m.BootFileName, m.ServerIPAddr, m.YourIPAddr, tc.file, applianceIP)
				}
				if len(m.Options.Get(dhcpv4.OptionClientMachineIdentifier)) != 17 {
					t.Errorf("%s: option 97 not echoed", m.MessageType())
				}
			}
		})
	}

	t.Run("a restart on the same state gives the same address", func(t *testing.T) {
		stop()
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		st2 := openState(t, path)
		t.Cleanup(func() { _ = st2.Close() })
		cfg.State = st2
		runServer(t, l, cfg)
		// Another machine first: the address of the lease must not go to it.
		other := dora(t, newClient(t, l, "cli0", unknownMAC(2)), dhcpv4.WithBroadcast(true))
		if got := addr(other.ACK.YourIPAddr); got == poolIP {
			t.Errorf("after the restart, a new machine got %v, leased to another", got)
		}
		again := dora(t, newClient(t, l, "cli0", unknownMAC(1)), dhcpv4.WithBroadcast(true))
		if got := addr(again.ACK.YourIPAddr); got != poolIP {
			t.Errorf("after the restart, the machine got %v, want its %v", got, poolIP)
		}
	})
}

// TestOnlyTheSiteInterface: a DISCOVER on another interface of the appliance gets no answer,
// while the same on the site's interface does.
func TestOnlyTheSiteInterface(t *testing.T) {
	l := newLab(t)
	runServer(t, l, Config{Site: testSite(ModeFull, "site0"), State: state.NewMemory(0), Boot: Boot{HTTPBase: "http://:8080"}})
	other := sniff(t, l.srv, "other0")

	// The control: on the site's interface, an answer.
	dora(t, newClient(t, l, "cli0", unknownMAC(1)), dhcpv4.WithBroadcast(true))

	c := newClient(t, l, "other1", unknownMAC(2))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if offer, err := c.DiscoverOffer(ctx, dhcpv4.WithBroadcast(true)); err == nil {
		t.Fatalf("a DISCOVER on other0 was answered: %s", offer.Summary())
	}
	if len(other.received()) == 0 {
		t.Fatal("the DISCOVERs did not reach other0: the test proves nothing")
	}
	if sent := other.sent(); len(sent) != 0 {
		t.Errorf("cairn sent %d DHCP packets on other0, the first %s", len(sent), sent[0].msg.Summary())
	}
	t.Logf("no answer on other0 in %v (%d DISCOVERs arrived there)", time.Since(start).Round(time.Millisecond), len(other.received()))
}

func TestInterfaceChecks(t *testing.T) {
	// These fail before anything is bound, so they need neither root nor a namespace.
	for _, tc := range []struct {
		iface string
		want  []string
	}{
		{"nosuch0", []string{`network.interface = "nosuch0"`, "no such interface", "lo"}},
		{"lo", []string{"interface lo", "network.appliance_ip 192.0.2.1", "127.0.0.1/8"}},
	} {
		srv, err := New(Config{Site: testSite(ModeFull, tc.iface), State: state.NewMemory(0), Boot: Boot{HTTPBase: "http://:8080"}})
		if err != nil {
			t.Fatal(err)
		}
		err = srv.Run(context.Background())
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("Run() on %s = %v, want it to say %q", tc.iface, err, w)
			}
		}
	}
}

// TestUpdateMovesTheListener: a site that names another interface moves the server there,
// without a restart, and a site it cannot serve leaves it where it was.
func TestUpdateMovesTheListener(t *testing.T) {
	l := newLab(t)
	logs := &logBuffer{}
	srv, _ := runServer(t, l, Config{Site: testSite(ModeFull, "site0"), State: state.NewMemory(0), Boot: Boot{HTTPBase: "http://:8080"}, Log: slogTo(logs)})
	moved := testSite(ModeFull, "other0")
	moved.Network.CIDR = netip.MustParsePrefix("198.51.100.0/24")
	moved.Network.ApplianceIP, moved.Network.Gateway, moved.Network.DNS = netip.MustParseAddr("198.51.100.1"), netip.Addr{}, nil
	moved.Network.DHCPRange = &site.Range{Start: netip.MustParseAddr("198.51.100.100"), End: netip.MustParseAddr("198.51.100.110")}
	moved.Hosts = nil
	srv.Update(moved)
	waitFor(t, func() bool { return srv.active.Load().iface == "other0" })
	lease := dora(t, newClient(t, l, "other1", unknownMAC(1)), dhcpv4.WithBroadcast(true))
	if got := addr(lease.ACK.YourIPAddr); got != netip.MustParseAddr("198.51.100.100") {
		t.Errorf("on other0, got %v", got)
	}
	c := newClient(t, l, "cli0", unknownMAC(2), nclient4.WithRetry(1))
	if _, err := c.DiscoverOffer(context.Background(), dhcpv4.WithBroadcast(true)); err == nil {
		t.Error("site0 is still answered after the site moved to other0")
	}
	// An interface that does not exist: logged, and other0 kept.
	gone := testSite(ModeFull, "gone0")
	srv.Update(gone)
	waitFor(t, func() bool { return strings.Contains(logs.String(), "still serving the previous network") })
	if srv.active.Load().iface != "other0" {
		t.Errorf("after a site naming a missing interface, serving %s", srv.active.Load().iface)
	}
	dora(t, newClient(t, l, "other1", unknownMAC(3)), dhcpv4.WithBroadcast(true))
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}

// TestProxyBesideDnsmasq: dnsmasq hands out addresses on the segment; cairn in proxy mode
// gives network boot clients their boot file, never an address, and keeps out of the
// exchanges of ordinary clients.
func TestProxyBesideDnsmasq(t *testing.T) {
	l := newLab(t)
	startDnsmasq(t, l, "192.0.2.150,192.0.2.199")
	runServer(t, l, Config{Site: testSite(ModeProxy, "site0"), State: state.NewMemory(0), Boot: Boot{HTTPBase: "http://:8080"}})
	wire := sniff(t, l.srv, "site0")

	// An ordinary client: dnsmasq's address, nothing from cairn.
	plain := dora(t, newClient(t, l, "cli0", unknownMAC(1)), dhcpv4.WithBroadcast(true))
	if sid := addr(plain.ACK.ServerIdentifier()); sid != netip.MustParseAddr("192.0.2.2") {
		t.Errorf("an ordinary client was acknowledged by %v", sid)
	}
	if sent := wire.sent(); len(sent) != 0 {
		t.Errorf("cairn answered an ordinary client: %s", sent[0].msg.Summary())
	}

	// A UEFI PXE client, as firmware does it: DISCOVER, take dnsmasq's address and cairn's
	// boot file, REQUEST the address from dnsmasq, then ask cairn on port 4011.
	mac := unknownMAC(2)
	var raw net.PacketConn
	if err := inNetns(l.cli, func() (err error) { raw, err = nclient4.NewRawUDPConn("cli0", 68); return err }); err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	pxe := append(optUEFI7, dhcpv4.WithBroadcast(true), machineUUID)
	disc := discover(t, mac, pxe...)
	offers := exchange(t, raw, disc, dhcpv4.MessageTypeOffer)
	var fromDnsmasq, fromCairn *dhcpv4.DHCPv4
	for _, o := range offers {
		switch addr(o.ServerIdentifier()) {
		case netip.MustParseAddr("192.0.2.2"):
			fromDnsmasq = o
		case applianceIP:
			fromCairn = o
		}
	}
	if fromDnsmasq == nil || fromCairn == nil {
		t.Fatalf("offers from dnsmasq %v and cairn %v, want one of each", fromDnsmasq != nil, fromCairn != nil)
	}
	if addr(fromCairn.YourIPAddr).IsValid() || fromCairn.BootFileName != "ipxe.efi" || fromCairn.ClassIdentifier() != "PXEClient" {
		t.Errorf("cairn's proxy offer: %s", fromCairn.Summary())
	}
	yi := addr(fromDnsmasq.YourIPAddr)
	if yi.Less(netip.MustParseAddr("192.0.2.150")) {
		t.Errorf("dnsmasq offered %v", yi)
	}
	req := request(t, fromDnsmasq, pxe...)
	acks := exchange(t, raw, req, dhcpv4.MessageTypeAck)
	if len(acks) != 1 || addr(acks[0].ServerIdentifier()) != netip.MustParseAddr("192.0.2.2") {
		t.Fatalf("the REQUEST to dnsmasq was acknowledged %d times (want once, by dnsmasq)", len(acks))
	}
	l.ip(t, l.cli, "addr", "add", yi.String()+"/24", "dev", "cli0")

	// The boot server request to cairn's port 4011, from the address dnsmasq gave.
	var udp *net.UDPConn
	if err := inNetns(l.cli, func() (err error) {
		udp, err = net.ListenUDP("udp4", &net.UDPAddr{IP: yi.AsSlice(), Port: 68})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	boot, _ := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(mac[:]), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(yi.AsSlice()), dhcpv4.WithOptionCopied(fromCairn, dhcpv4.OptionServerIdentifier)}, optUEFI7...)...)
	if _, err := udp.WriteTo(boot.ToBytes(), &net.UDPAddr{IP: applianceIP.AsSlice(), Port: portPXE}); err != nil {
		t.Fatal(err)
	}
	_ = udp.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, from, err := udp.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no answer on port 4011: %v", err)
	}
	ack, err := dhcpv4.FromBytes(buf[:n])
	if err != nil || ack.MessageType() != dhcpv4.MessageTypeAck || ack.BootFileName != "ipxe.efi" || addr(ack.YourIPAddr).IsValid() {
		t.Errorf("port 4011 answered (from %v) %v: %v", from, err, ack)
	}

	// Every packet cairn put on the wire carried no address.
	wire.waitSent(func(p sniffed) bool { return p.src.Port() == portPXE })
	sent := wire.sent()
	if len(sent) < 2 {
		t.Errorf("cairn sent %d packets, want at least the proxy OFFER and the port 4011 ACK", len(sent))
	}
	for _, p := range sent {
		if addr(p.msg.YourIPAddr).IsValid() {
			t.Errorf("cairn sent yiaddr %v: %s", p.msg.YourIPAddr, p.msg.Summary())
		}
	}
}

// exchange broadcasts m and gathers the answers of type mt to it for two seconds.
func exchange(t *testing.T, c net.PacketConn, m *dhcpv4.DHCPv4, mt dhcpv4.MessageType) []*dhcpv4.DHCPv4 {
	t.Helper()
	if _, err := c.WriteTo(m.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: 67}); err != nil {
		t.Fatal(err)
	}
	var out []*dhcpv4.DHCPv4
	deadline := time.Now().Add(2 * time.Second)
	buf := make([]byte, 1500)
	for {
		_ = c.SetReadDeadline(deadline)
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return out
		}
		r, err := dhcpv4.FromBytes(buf[:n])
		if err == nil && r.OpCode == dhcpv4.OpcodeBootReply && r.TransactionID == m.TransactionID && r.MessageType() == mt {
			out = append(out, r)
		}
	}
}

// startDnsmasq runs dnsmasq as the segment's DHCP server, in its own namespace, leasing rng,
// with the configuration lines conf.
func startDnsmasq(t testing.TB, l *lab, rng string, conf ...string) {
	t.Helper()
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		t.Skip("dnsmasq is not installed (scripts/deps.sh installs dnsmasq-base): it is the DHCP server proxy mode runs beside")
	}
	dir := t.TempDir()
	confFile := filepath.Join(dir, "dnsmasq.conf")
	if err := os.WriteFile(confFile, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", l.anc, bin, "--keep-in-foreground", "--conf-file="+confFile, "--port=0", "--interface=anc0", "--bind-interfaces",
		"--dhcp-range="+rng+",255.255.255.0,1h", "--dhcp-leasefile="+filepath.Join(dir, "leases"), "--pid-file", "--user=root",
		"--no-resolv", "--no-hosts", "--no-ping", "--dhcp-authoritative", "--log-facility=-")
	out := &logBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("dnsmasq:\n%s", out)
		}
	})
	// dnsmasq binds its socket at once; a moment for it to be there.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(out.String(), "DHCP, IP range"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("dnsmasq did not start:\n%s", out)
		}
	}
}

// TestOffModeDnsmasqRecipe runs dnsmasq with the configuration docs/operations.md gives for
// dhcp = "off", and checks that each kind of client is sent where cairn would send it.
func TestOffModeDnsmasqRecipe(t *testing.T) {
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "dnsmasq (with its own TFTP server off")
	if !ok {
		t.Fatal("docs/operations.md has no dnsmasq recipe for dhcp = \"off\"")
	}
	_, rest, _ = strings.Cut(rest, "```\n")
	recipe, _, _ := strings.Cut(rest, "```")
	l := newLab(t)
	startDnsmasq(t, l, "192.0.2.150,192.0.2.199", strings.Split(strings.TrimSpace(strings.ReplaceAll(recipe, "10.20.0.2", "192.0.2.1")), "\n")...)
	for i, tc := range []struct {
		name string
		mods []dhcpv4.Modifier
		file string
	}{
		{"BIOS PXE", optBIOS, "undionly.kpxe"},
		{"UEFI x64 PXE", optUEFI7, "ipxe.efi"},
		{"UEFI PXE (9)", optUEFI9, "ipxe.efi"},
		{"UEFI HTTP boot", optHTTP, "http://192.0.2.1:5000/boot/ipxe.efi"},
		{"iPXE", optIPXE, "http://192.0.2.1:5000/boot/ipxe?mac=${netX/mac}&platform=${platform}"},
		{"an installed OS", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lease := dora(t, newClient(t, l, "cli0", unknownMAC(20+i)), append(tc.mods, dhcpv4.WithBroadcast(true))...)
			ack := lease.ACK
			if ack.BootFileName != tc.file {
				t.Errorf("file %q, want %q", ack.BootFileName, tc.file)
			}
			if tc.file != "" && !strings.HasPrefix(tc.file, "http") && addr(ack.ServerIPAddr) != applianceIP {
				t.Errorf("next-server %v, want the appliance %v", ack.ServerIPAddr, applianceIP)
			}
			if tc.name == "UEFI HTTP boot" && ack.ClassIdentifier() != "HTTPClient" {
				t.Errorf("option 60 %q, want HTTPClient", ack.ClassIdentifier())
			}
		})
	}
}

// TestWaitForInterface: with Wait, a first site whose interface is missing does not end Run:
// it says why through Problem until its context ends.
func TestWaitForInterface(t *testing.T) {
	srv, err := New(Config{Site: testSite(ModeFull, "nosuch0"), State: state.NewMemory(0), Boot: Boot{HTTPBase: "http://:8080"}, Wait: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for srv.Problem() == "" {
		select {
		case err := <-done:
			t.Fatalf("Run with Wait on a missing interface ended: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("Problem() stayed empty with the site's interface missing")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if p := srv.Problem(); !strings.Contains(p, `network.interface = "nosuch0"`) {
		t.Errorf("Problem() = %q, want it to name the interface and its key", p)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run after cancel = %v, want context.Canceled", err)
	}
}
