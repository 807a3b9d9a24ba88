package dhcp

import (
	"encoding/binary"
	"net/netip"

	"github.com/cairn-appliance/cairn/site"
)

// The modes of site.toml's network.dhcp.
const (
	ModeFull  = "full"
	ModeProxy = "proxy"
	ModeOff   = "off"
)

// network is what the server takes from a site: where it listens and what it answers.
type network struct {
	mode      string
	iface     string
	self      netip.Addr // appliance_ip: the server identifier
	cidr      netip.Prefix
	broadcast netip.Addr
	gateway   netip.Addr
	dns       []netip.Addr
	ntp       []netip.Addr // option 42 carries addresses only
	ntpNames  []string     // names in network.ntp, which option 42 cannot carry
	domain    string
	pool      *site.Range // full mode only
	// hosts are the site's hosts by MAC; reservedBy the fixed addresses they hold.
	hosts      map[site.MAC]reservation
	reservedBy map[netip.Addr]site.MAC
}

// reservation is a site host as DHCP sees it.
type reservation struct {
	name string
	ip   netip.Addr // invalid when the host has no fixed address: it gets one from the pool
}

// fromSite reads the DHCP settings of a site.
func fromSite(s *site.Site) *network {
	n := s.Network
	nw := &network{
		mode:       n.DHCP,
		iface:      n.Interface,
		self:       n.ApplianceIP,
		cidr:       n.CIDR.Masked(),
		gateway:    n.Gateway,
		domain:     s.Settings.Domain,
		hosts:      make(map[site.MAC]reservation, len(s.Hosts)),
		reservedBy: make(map[netip.Addr]site.MAC, len(s.Hosts)),
	}
	if nw.mode == "" {
		nw.mode = ModeOff
	}
	if nw.cidr.IsValid() && nw.cidr.Addr().Is4() {
		nw.broadcast = lastAddr(nw.cidr)
	}
	for _, a := range n.DNS {
		if a.Is4() {
			nw.dns = append(nw.dns, a)
		}
	}
	for _, s := range n.NTP {
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
			nw.ntp = append(nw.ntp, a)
		} else {
			nw.ntpNames = append(nw.ntpNames, s)
		}
	}
	if n.DHCPRange != nil && nw.mode == ModeFull {
		r := *n.DHCPRange
		nw.pool = &r
	}
	for _, h := range s.Hosts {
		nw.hosts[h.MAC] = reservation{name: h.Name, ip: h.IP}
		if h.IP.IsValid() {
			nw.reservedBy[h.IP] = h.MAC
		}
	}
	return nw
}

// sameListener reports whether n and o listen alike: the same mode, interface and address.
func (n *network) sameListener(o *network) bool {
	return n != nil && o != nil && n.mode == o.mode && n.iface == o.iface && n.self == o.self
}

// excluded reports whether a must never be leased from the pool: outside the CIDR, its
// network or broadcast address, the appliance's, the gateway's, a DNS server's, or a site
// host's fixed address.
func (n *network) excluded(a netip.Addr) bool {
	if !n.cidr.Contains(a) || a == n.cidr.Addr() || a == n.broadcast || a == n.self || a == n.gateway {
		return true
	}
	if _, ok := n.reservedBy[a]; ok {
		return true
	}
	for _, d := range n.dns {
		if a == d {
			return true
		}
	}
	return false
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	binary.BigEndian.PutUint32(a[:], binary.BigEndian.Uint32(a[:])|(1<<(32-p.Bits())-1))
	return netip.AddrFrom4(a)
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func addrOf(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}
