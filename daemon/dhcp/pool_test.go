package dhcp

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/site"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// smallPool is a pool over 192.0.2.0/24 whose range runs from .1 to .7, holding the
// appliance (.1), the gateway (.2), a DNS server (.3) and a site host's fixed address (.5).
func smallPool() *pool {
	s := testSite(ModeFull, "x")
	s.Network.Gateway = netip.MustParseAddr("192.0.2.2")
	s.Network.DNS = []netip.Addr{netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("198.51.100.53")}
	s.Network.DHCPRange = &site.Range{Start: netip.MustParseAddr("192.0.2.0"), End: netip.MustParseAddr("192.0.2.7")}
	s.Hosts[1].IP = netip.MustParseAddr("192.0.2.5")
	p := newPool()
	p.setNetwork(fromSite(s))
	return p
}

// lease offers and commits an address to mac.
func lease(t *testing.T, p *pool, mac site.MAC, now time.Time, d time.Duration) netip.Addr {
	t.Helper()
	ip, _, err := p.offer(mac, now)
	if err != nil {
		t.Fatalf("offer(%s) = %v", mac, err)
	}
	if _, _, ok := p.commit(mac, ip, "", now, d); !ok {
		t.Fatalf("commit(%s, %s) refused", mac, ip)
	}
	return ip
}

func TestPoolSkipsWhatIsNotItsToLease(t *testing.T) {
	p := smallPool()
	var got []string
	for n := range 3 {
		got = append(got, lease(t, p, unknownMAC(n), t0, time.Hour).String())
	}
	// .0 is the network address, .1-.3 the appliance, gateway and DNS, .5 web-1's.
	want := []string{"192.0.2.4", "192.0.2.6", "192.0.2.7"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("leased %v, want %v", got, want)
		}
	}
	if _, _, err := p.offer(unknownMAC(9), t0); !errors.Is(err, errPoolFull) {
		t.Errorf("offer on a full pool = %v, want errPoolFull", err)
	}
	// A machine asking again gets its own address back, full pool or not.
	if ip, _, err := p.offer(unknownMAC(1), t0.Add(time.Minute)); err != nil || ip.String() != "192.0.2.6" {
		t.Errorf("offer to a machine with a lease = %v, %v; want its 192.0.2.6", ip, err)
	}
}

func TestPoolReusesExpiredLeasesLast(t *testing.T) {
	p := smallPool()
	lease(t, p, unknownMAC(0), t0, 2*time.Hour)        // .4, expires at t0+2h
	lease(t, p, unknownMAC(1), t0, time.Hour)          // .6, expires first
	ip7 := lease(t, p, unknownMAC(2), t0, 3*time.Hour) // .7
	if _, ok := p.release(unknownMAC(2), ip7); !ok {   // .7 freed
		t.Fatal("release refused")
	}
	later := t0.Add(4 * time.Hour) // every lease has expired
	// A free address goes before any expired lease, though it is higher.
	if ip := lease(t, p, unknownMAC(3), later, time.Hour); ip.String() != "192.0.2.7" {
		t.Errorf("with .7 free, got %v", ip)
	}
	// Then the lease that expired the longest ago.
	ip, writes, err := p.offer(unknownMAC(4), later)
	if err != nil || ip.String() != "192.0.2.6" {
		t.Fatalf("offer = %v, %v; want 192.0.2.6, whose lease expired first", ip, err)
	}
	if len(writes) != 1 || writes[0].put != nil || writes[0].del != unknownMAC(1) {
		t.Errorf("writes = %+v, want the old lease of .6 deleted", writes)
	}
	// The machine that had it gets another one back, not a second claim on .6.
	if ip, _, err := p.offer(unknownMAC(1), later); err != nil || ip.String() != "192.0.2.4" {
		t.Errorf("offer to the machine that lost .6 = %v, %v; want the next expired, .4", ip, err)
	}
}

func TestPoolOffersExpire(t *testing.T) {
	p := smallPool()
	ip, _, _ := p.offer(unknownMAC(0), t0)
	if ip2, _, _ := p.offer(unknownMAC(1), t0); ip2 == ip {
		t.Fatalf("two machines were offered %v", ip)
	}
	// An offer nobody requested is free again after offerHold, and goes to the next machine.
	if ip3, _, _ := p.offer(unknownMAC(2), t0.Add(offerHold+time.Second)); ip3 != ip {
		t.Errorf("after the offers expired, offered %v, want %v again", ip3, ip)
	}
	// A machine may not commit what it was not offered.
	if _, _, ok := p.commit(unknownMAC(3), netip.MustParseAddr("192.0.2.7"), "", t0, time.Hour); ok {
		t.Error("commit without an offer was accepted")
	}
}

func TestPoolDecline(t *testing.T) {
	p := smallPool()
	ip := lease(t, p, unknownMAC(0), t0, time.Hour)
	writes, ok := p.decline(unknownMAC(0), ip, t0)
	if !ok || len(writes) != 1 || writes[0].del != unknownMAC(0) {
		t.Fatalf("decline = %+v, %v", writes, ok)
	}
	if next, _, _ := p.offer(unknownMAC(0), t0); next == ip {
		t.Errorf("a declined address was offered again at once")
	}
	if _, ok := p.decline(unknownMAC(5), ip, t0); ok {
		t.Error("a DECLINE of another machine's address was accepted")
	}
	p.withdraw(unknownMAC(0))
	if again, _, _ := p.offer(unknownMAC(1), t0.Add(declineHold+time.Second)); again != ip {
		t.Errorf("after the hold, offered %v, want the declined %v back", again, ip)
	}
}

func TestPoolFollowsTheSite(t *testing.T) {
	p := smallPool()
	ip := lease(t, p, unknownMAC(0), t0, time.Hour) // .4
	// The site gives .4 to a host: the machine that leased it gets another address.
	s := testSite(ModeFull, "x")
	s.Network.Gateway = netip.MustParseAddr("192.0.2.2")
	s.Network.DHCPRange = &site.Range{Start: netip.MustParseAddr("192.0.2.0"), End: netip.MustParseAddr("192.0.2.7")}
	s.Hosts[1].IP = ip
	p.setNetwork(fromSite(s))
	next, writes, err := p.offer(unknownMAC(0), t0)
	if err != nil || next == ip {
		t.Fatalf("offer = %v, %v; want an address other than %v, now reserved", next, err, ip)
	}
	if len(writes) != 1 || writes[0].del != unknownMAC(0) {
		t.Errorf("writes = %+v, want the old lease deleted", writes)
	}
	if _, _, ok := p.commit(unknownMAC(0), ip, "", t0, time.Hour); ok {
		t.Error("a REQUEST for an address the site now reserves was accepted")
	}
}

func TestPoolLoadsLeases(t *testing.T) {
	p := newPool()
	p.load([]state.Lease{
		{MAC: unknownMAC(0), IP: netip.MustParseAddr("192.0.2.4"), Expiry: t0.Add(time.Hour)},
		{MAC: unknownMAC(1), IP: netip.MustParseAddr("192.0.2.4"), Expiry: t0.Add(time.Hour)}, // a duplicate is dropped
	})
	p.setNetwork(smallPool().nw)
	if ip, _, _ := p.offer(unknownMAC(2), t0); ip.String() != "192.0.2.6" {
		t.Errorf("offer to a new machine = %v, want .6: .4 is leased", ip)
	}
	if ip, _, _ := p.offer(unknownMAC(0), t0); ip.String() != "192.0.2.4" {
		t.Errorf("offer to the machine of the lease = %v, want its .4", ip)
	}
}

func TestPoolBitmapEdges(t *testing.T) {
	// A range of 130 addresses spans three words; its last address must be leasable, and
	// nothing past it.
	s := testSite(ModeFull, "x")
	s.Network.CIDR = netip.MustParsePrefix("10.0.0.0/16")
	s.Network.ApplianceIP, s.Network.Gateway, s.Network.DNS = netip.MustParseAddr("10.0.255.1"), netip.Addr{}, nil
	s.Network.DHCPRange = &site.Range{Start: netip.MustParseAddr("10.0.1.0"), End: netip.MustParseAddr("10.0.1.129")}
	s.Hosts = nil
	p := newPool()
	p.setNetwork(fromSite(s))
	var last netip.Addr
	for n := range 130 {
		last = lease(t, p, unknownMAC(n), t0, time.Hour)
	}
	if last.String() != "10.0.1.129" {
		t.Errorf("the 130th lease is %v, want 10.0.1.129", last)
	}
	if _, _, err := p.offer(unknownMAC(131), t0); !errors.Is(err, errPoolFull) {
		t.Errorf("the 131st offer = %v, want errPoolFull", err)
	}
}
