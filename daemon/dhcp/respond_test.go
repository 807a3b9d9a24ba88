package dhcp

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/cairn-appliance/cairn/site"
)

func TestFullReservedHost(t *testing.T) {
	u := newUnitServer(t, testSite(ModeFull, "site0"))
	offer := u.ask(t, portDHCP, discover(t, webMAC, dhcpv4.WithBroadcast(true)))
	if offer == nil {
		t.Fatal("no OFFER")
	}
	r := offer.reply
	if r.MessageType() != dhcpv4.MessageTypeOffer || addr(r.YourIPAddr) != webIP {
		t.Fatalf("answer %v for %v, want an OFFER of %v", r.MessageType(), r.YourIPAddr, webIP)
	}
	checkNetworkOptions(t, r)
	if r.HostName() != "web-1" || r.DomainName() != "lab.example" {
		t.Errorf("hostname %q, domain %q; want web-1, lab.example", r.HostName(), r.DomainName())
	}
	if r.BootFileName != "" {
		t.Errorf("an installed OS was given boot file %q", r.BootFileName)
	}
	if !offer.dst.IP.Equal(net.IPv4bcast) || offer.hw != nil {
		t.Errorf("a client that asked for broadcast is answered at %v (hw %v)", offer.dst, offer.hw)
	}
	ack := u.ask(t, portDHCP, request(t, r))
	if ack == nil || ack.reply.MessageType() != dhcpv4.MessageTypeAck || addr(ack.reply.YourIPAddr) != webIP {
		t.Fatalf("REQUEST answered with %v", ack)
	}
	if got := u.leases(t); len(got) != 0 {
		t.Errorf("a reserved host left leases %+v; its address is the site's", got)
	}
	// Asking for another address gets a NAK, by broadcast.
	nak := u.ask(t, portDHCP, discover(t, webMAC, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("192.0.2.11")))))
	if nak == nil || nak.reply.MessageType() != dhcpv4.MessageTypeNak || !nak.dst.IP.Equal(net.IPv4bcast) {
		t.Errorf("a REQUEST for the wrong address got %v", nak)
	}
	if !strings.Contains(u.logs.String(), "is not the address of host web-1") {
		t.Errorf("the NAK was not logged with its reason:\n%s", u.logs)
	}
}

func checkNetworkOptions(t *testing.T, r *dhcpv4.DHCPv4) {
	t.Helper()
	if got := r.SubnetMask(); !bytes.Equal(got, net.CIDRMask(24, 32)) {
		t.Errorf("mask %v", got)
	}
	if got := r.Router(); len(got) != 1 || addr(got[0]) != gatewayIP {
		t.Errorf("router %v, want %v", got, gatewayIP)
	}
	if got := r.DNS(); len(got) != 1 || addr(got[0]) != applianceIP {
		t.Errorf("DNS %v, want %v", got, applianceIP)
	}
	if got := r.NTPServers(); len(got) != 1 || addr(got[0]) != applianceIP {
		t.Errorf("NTP %v, want %v (the name in network.ntp cannot be sent)", got, applianceIP)
	}
	if got := r.IPAddressLeaseTime(0); got != DefaultLeaseTime {
		t.Errorf("lease time %v, want %v", got, DefaultLeaseTime)
	}
	if got := addr(r.ServerIdentifier()); got != applianceIP {
		t.Errorf("server identifier %v, want %v", got, applianceIP)
	}
}

func TestFullUnknownMachine(t *testing.T) {
	u := newUnitServer(t, testSite(ModeFull, "site0"))
	mac := unknownMAC(1)
	offer := u.ask(t, portDHCP, discover(t, mac))
	if offer == nil || addr(offer.reply.YourIPAddr) != poolStart {
		t.Fatalf("OFFER %v, want %v", offer, poolStart)
	}
	// No broadcast flag, no address yet: unicast to the offered address, through ARP.
	if addr(offer.dst.IP) != poolStart || !bytes.Equal(offer.hw, mac[:]) {
		t.Errorf("answered at %v (hw %v), want %v at %v", offer.dst, offer.hw, poolStart, mac)
	}
	if offer.reply.HostName() != "" {
		t.Errorf("a machine not in the site was named %q", offer.reply.HostName())
	}
	if got := u.leases(t); len(got) != 0 {
		t.Errorf("an OFFER was written to the state: %+v", got)
	}
	ack := u.ask(t, portDHCP, request(t, offer.reply, dhcpv4.WithOption(dhcpv4.OptHostName("rescue"))))
	if ack == nil || ack.reply.MessageType() != dhcpv4.MessageTypeAck || addr(ack.reply.YourIPAddr) != poolStart {
		t.Fatalf("ACK %v", ack)
	}
	checkNetworkOptions(t, ack.reply)
	got := u.leases(t)
	if len(got) != 1 || got[0].MAC != mac || got[0].IP != poolStart || got[0].Hostname != "rescue" ||
		!got[0].Expiry.Equal(u.clock.Add(DefaultLeaseTime)) {
		t.Errorf("leases %+v, want %v at %v for an hour, named rescue", got, mac, poolStart)
	}
	// Renewing: unicast from its address, answered at it.
	u.clock = u.clock.Add(30 * time.Minute)
	renew, _ := dhcpv4.NewRenewFromAck(ack.reply)
	a := u.ask(t, portDHCP, renew)
	if a == nil || a.reply.MessageType() != dhcpv4.MessageTypeAck || addr(a.dst.IP) != poolStart || a.hw != nil {
		t.Fatalf("RENEW answered %v", a)
	}
	if got := u.leases(t); !got[0].Expiry.Equal(u.clock.Add(DefaultLeaseTime)) {
		t.Errorf("renewing left the expiry at %v", got[0].Expiry)
	}
	// A site host without a fixed address gets one from the pool, with its name.
	o := u.ask(t, portDHCP, discover(t, dbMAC))
	if o == nil || addr(o.reply.YourIPAddr) != poolStart.Next() || o.reply.HostName() != "db-1" {
		t.Errorf("db-1 was offered %v named %q, want %v named db-1", o.reply.YourIPAddr, o.reply.HostName(), poolStart.Next())
	}
	// RELEASE frees the address and its lease.
	rel, _ := dhcpv4.NewReleaseFromACK(ack.reply)
	if a := u.ask(t, portDHCP, rel); a != nil {
		t.Errorf("RELEASE was answered: %v", a.reply)
	}
	if got := u.leases(t); len(got) != 0 {
		t.Errorf("after RELEASE, leases %+v", got)
	}
}

func TestFullDeclineAndInform(t *testing.T) {
	u := newUnitServer(t, testSite(ModeFull, "site0"))
	mac := unknownMAC(1)
	offer := u.ask(t, portDHCP, discover(t, mac))
	ack := u.ask(t, portDHCP, request(t, offer.reply))
	decline, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac[:]), dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ack.reply.YourIPAddr)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(applianceIP.AsSlice())))
	if a := u.ask(t, portDHCP, decline); a != nil {
		t.Errorf("DECLINE was answered: %v", a.reply)
	}
	if !strings.Contains(u.logs.String(), "address declined") {
		t.Errorf("the DECLINE was not logged:\n%s", u.logs)
	}
	again := u.ask(t, portDHCP, discover(t, mac))
	if again == nil || addr(again.reply.YourIPAddr) == poolStart {
		t.Errorf("after declining %v the machine was offered it again", poolStart)
	}
	inform, _ := dhcpv4.NewInform(mac[:], net.ParseIP("192.0.2.50"))
	a := u.ask(t, portDHCP, inform)
	if a == nil || a.reply.MessageType() != dhcpv4.MessageTypeAck || addr(a.reply.YourIPAddr).IsValid() ||
		a.reply.Options.Has(dhcpv4.OptionIPAddressLeaseTime) || addr(a.dst.IP) != netip.MustParseAddr("192.0.2.50") {
		t.Fatalf("INFORM answered %v", a)
	}
	checkNetworkOptionsNoLease(t, a.reply)
}

func checkNetworkOptionsNoLease(t *testing.T, r *dhcpv4.DHCPv4) {
	t.Helper()
	if got := r.Router(); len(got) != 1 || addr(got[0]) != gatewayIP || r.DomainName() != "lab.example" {
		t.Errorf("INFORM answered without the network's options: %v", r.Summary())
	}
}

func TestFullBootFiles(t *testing.T) {
	u := newUnitServer(t, testSite(ModeFull, "site0"))
	for _, tc := range []struct {
		name   string
		mods   []dhcpv4.Modifier
		file   string
		vendor string
	}{
		{"BIOS PXE", optBIOS, "undionly.kpxe", "PXEClient"},
		{"UEFI x64 PXE (7)", optUEFI7, "ipxe.efi", "PXEClient"},
		{"UEFI PXE (9)", optUEFI9, "ipxe.efi", "PXEClient"},
		{"UEFI HTTP boot", optHTTP, "http://192.0.2.1:8080/boot/ipxe.efi", "HTTPClient"},
		{"iPXE", optIPXE, "http://192.0.2.1:8080/boot/ipxe?mac=52:54:00:00:01:01&platform=${platform}", "PXEClient"},
		{"ARM64 PXE: an address, no file", optARM, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := u.ask(t, portDHCP, discover(t, webMAC, append(tc.mods, machineUUID)...))
			if a == nil {
				t.Fatal("no answer")
			}
			r := a.reply
			if r.BootFileName != tc.file || r.ClassIdentifier() != tc.vendor || addr(r.YourIPAddr) != webIP {
				t.Errorf("file %q, option 60 %q, address %v; want %q, %q, %v", r.BootFileName, r.ClassIdentifier(), r.YourIPAddr, tc.file, tc.vendor, webIP)
			}
			if tc.file == "" {
				return
			}
			if addr(r.ServerIPAddr) != applianceIP {
				t.Errorf("next-server %v, want %v", r.ServerIPAddr, applianceIP)
			}
			if got := r.Options.Get(dhcpv4.OptionClientMachineIdentifier); len(got) != 17 {
				t.Errorf("option 97 not echoed: %x", got)
			}
			pxe := r.Options.Get(dhcpv4.OptionVendorSpecificInformation)
			if want := tc.vendor == "PXEClient"; want != bytes.Equal(pxe, []byte{6, 1, 8, 255}) {
				t.Errorf("option 43 = %x for %s", pxe, tc.vendor)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	u := newUnitServer(t, testSite(ModeFull, "site0"))
	relayed := discover(t, unknownMAC(1), dhcpv4.WithGatewayIP(net.ParseIP("198.51.100.1")))
	if a := u.ask(t, portDHCP, relayed); a != nil {
		t.Errorf("a request relayed from another subnet was answered: %v", a.reply)
	}
	// A relay on the site's own segment (how perfdhcp asks) is answered at the relay.
	onSegment := discover(t, unknownMAC(2), dhcpv4.WithGatewayIP(net.ParseIP("192.0.2.2")))
	if a := u.ask(t, portDHCP, onSegment); a == nil || addr(a.dst.IP) != netip.MustParseAddr("192.0.2.2") || a.dst.Port != 67 {
		t.Errorf("a request relayed on the segment got %v", a)
	}
	multicast := discover(t, site.MAC{0x01, 0, 0x5e, 0, 0, 1})
	if a := u.ask(t, portDHCP, multicast); a != nil {
		t.Error("a multicast hardware address was answered")
	}
	long := discover(t, unknownMAC(3))
	long.ClientHWAddr = make(net.HardwareAddr, 16)
	if a := u.ask(t, portDHCP, long); a != nil {
		t.Error("a 16-byte hardware address was answered")
	}
	for _, want := range []string{"relayed by 198.51.100.1", "not a network card's", "not an Ethernet client"} {
		if !strings.Contains(u.logs.String(), want) {
			t.Errorf("no refusal logged with %q:\n%s", want, u.logs)
		}
	}
}

func TestPoolExhaustionIsRefusedAndLogged(t *testing.T) {
	s := testSite(ModeFull, "site0")
	s.Network.DHCPRange = &site.Range{Start: poolStart, End: poolStart.Next()}
	u := newUnitServer(t, s)
	for n := range 2 {
		o := u.ask(t, portDHCP, discover(t, unknownMAC(n)))
		if o == nil || u.ask(t, portDHCP, request(t, o.reply)) == nil {
			t.Fatalf("machine %d got no lease", n)
		}
	}
	if a := u.ask(t, portDHCP, discover(t, unknownMAC(9))); a != nil {
		t.Errorf("a full pool offered %v", a.reply.YourIPAddr)
	}
	if !strings.Contains(u.logs.String(), "level=INFO msg=\"dhcp: refused\"") || !strings.Contains(u.logs.String(), "widen the range") {
		t.Errorf("exhaustion was not logged at info with its reason:\n%s", u.logs)
	}
}

func TestProxy(t *testing.T) {
	u := newUnitServer(t, testSite(ModeProxy, "site0"))
	if a := u.ask(t, portDHCP, discover(t, unknownMAC(1))); a != nil {
		t.Errorf("proxy mode answered an ordinary client: %v", a.reply)
	}
	offer := u.ask(t, portDHCP, discover(t, unknownMAC(1), append(optUEFI7, machineUUID)...))
	if offer == nil {
		t.Fatal("proxy mode did not answer a PXE client")
	}
	r := offer.reply
	if addr(r.YourIPAddr).IsValid() || r.BootFileName != "ipxe.efi" || r.ClassIdentifier() != "PXEClient" || addr(r.ServerIdentifier()) != applianceIP {
		t.Errorf("proxy OFFER: %s", r.Summary())
	}
	if r.Options.Has(dhcpv4.OptionIPAddressLeaseTime) || r.Options.Has(dhcpv4.OptionRouter) {
		t.Errorf("a proxy OFFER carries address options: %s", r.Summary())
	}
	if !offer.dst.IP.Equal(net.IPv4bcast) || offer.dst.Port != 68 {
		t.Errorf("proxy OFFER sent to %v, want broadcast", offer.dst)
	}
	// The REQUEST to the DHCP server's offer is not cairn's.
	other := request(t, r, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("192.0.2.2"))), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("192.0.2.77"))))
	for _, m := range optUEFI7 {
		m(other)
	}
	if a := u.ask(t, portDHCP, other); a != nil {
		t.Errorf("proxy mode answered a REQUEST to another server: %v", a.reply)
	}
	// The boot server REQUEST on 4011, from the address the DHCP server gave.
	req := request(t, r, append(optUEFI7, dhcpv4.WithClientIP(net.ParseIP("192.0.2.77")))...)
	a := u.respond(u.active.Load(), portPXE, &net.UDPAddr{IP: net.ParseIP("192.0.2.77"), Port: 68}, req)
	if a == nil || a.reply.MessageType() != dhcpv4.MessageTypeAck || a.reply.BootFileName != "ipxe.efi" || addr(a.reply.YourIPAddr).IsValid() {
		t.Fatalf("port 4011 REQUEST answered %v", a)
	}
	if addr(a.dst.IP) != netip.MustParseAddr("192.0.2.77") || a.dst.Port != 68 {
		t.Errorf("port 4011 ACK sent to %v, want 192.0.2.77:68", a.dst)
	}
	if got := u.leases(t); len(got) != 0 {
		t.Errorf("proxy mode wrote leases: %+v", got)
	}
	if a := u.ask(t, portDHCP, discover(t, unknownMAC(1), optARM...)); a != nil {
		t.Error("proxy mode answered a client it has no iPXE for")
	}
}

func TestUpdateFollowsTheSite(t *testing.T) {
	u := newUnitServer(t, testSite(ModeFull, "site0"))
	mac := unknownMAC(7)
	s := testSite(ModeFull, "site0")
	s.Hosts = append(s.Hosts, &site.Host{Name: "new-1", MAC: mac, IP: netip.MustParseAddr("192.0.2.20")})
	u.Update(s)
	// Run applies it; here, as Run would for the same listener:
	u.activate(u.want.Load())
	a := u.ask(t, portDHCP, discover(t, mac))
	if a == nil || addr(a.reply.YourIPAddr) != netip.MustParseAddr("192.0.2.20") || a.reply.HostName() != "new-1" {
		t.Errorf("after Update, the new host was offered %v", a)
	}
	bad := testSite("sometimes", "site0")
	u.Update(bad)
	if u.want.Load().mode != ModeFull {
		t.Error("Update took a site with an unknown dhcp mode")
	}
}
