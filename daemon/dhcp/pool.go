package dhcp

import (
	"errors"
	"math/bits"
	"net/netip"
	"time"

	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/site"
)

// How long an offered address is held for the client that was offered it, and how long an
// address a client declined (found in use) is kept out of the pool.
const (
	offerHold   = time.Minute
	declineHold = 10 * time.Minute
)

// errPoolFull is the reason a machine gets no address when every address of the range is
// leased, none of them expired.
var errPoolFull = errors.New("every address of network.dhcp_range is leased and none has expired: widen the range, or add the machine to hosts/ with an ip")

// pool hands out the addresses of the site's dhcp_range to machines that have no fixed
// address. It holds every lease in memory, as loaded from the state and changed since; each
// change it makes is returned as a list of writes for the journal to keep in the state.
//
// A machine gets back the address it had, when nothing else took it since; otherwise the
// lowest free address of the range; when none is free, the address whose lease expired the
// longest ago. It never leases an address outside the CIDR, the appliance's, the gateway's,
// a DNS server's or a site host's fixed address.
type pool struct {
	nw    *network
	first uint32   // the range's first usable address, as a number
	size  uint32   // how many addresses it has
	taken []uint64 // bit i set: first+i is not free (excluded, leased, offered or declined)

	byMAC    map[site.MAC]*binding
	byIP     map[netip.Addr]*binding
	offers   []hold // oldest first: offers expire in the order they were made
	declined map[netip.Addr]time.Time
	declines []hold
}

// binding is an address bound to a machine: a lease, or an offer not yet requested.
type binding struct {
	mac      site.MAC
	ip       netip.Addr
	expiry   time.Time
	hostname string
	offered  bool // an offer: held until expiry, never written to the state
}

type hold struct {
	mac   site.MAC
	ip    netip.Addr
	until time.Time
}

// write is one change of the lease table: a lease put, or (put nil) the lease of del deleted.
type write struct {
	put *state.Lease
	del site.MAC
}

func newPool() *pool {
	return &pool{nw: &network{}, byMAC: map[site.MAC]*binding{}, byIP: map[netip.Addr]*binding{}, declined: map[netip.Addr]time.Time{}}
}

// load adds the leases kept in the state.
func (p *pool) load(leases []state.Lease) {
	for _, l := range leases {
		if old := p.byIP[l.IP]; old != nil {
			continue // two leases of one address: keep the first (the state never writes this)
		}
		b := &binding{mac: l.MAC, ip: l.IP, expiry: l.Expiry, hostname: l.Hostname}
		p.byMAC[l.MAC], p.byIP[l.IP] = b, b
	}
	p.setNetwork(p.nw)
}

// setNetwork takes the range and the excluded addresses of a site and rebuilds the map of
// taken addresses. Leases outside the new range stay until their machine asks again.
func (p *pool) setNetwork(nw *network) {
	p.nw = nw
	p.first, p.size = 0, 0
	if r := nw.pool; r != nil && nw.cidr.IsValid() && r.Start.Is4() && r.End.Is4() {
		lo := max(u32(r.Start), u32(nw.cidr.Addr())+1)
		hi := min(u32(r.End), u32(nw.broadcast)-1)
		if lo <= hi {
			p.first, p.size = lo, hi-lo+1
		}
	}
	p.taken = make([]uint64, (uint64(p.size)+63)/64)
	if rem := p.size % 64; rem != 0 {
		p.taken[len(p.taken)-1] = ^uint64(0) << rem // past the end: never free
	}
	for _, a := range []netip.Addr{nw.cidr.Addr(), nw.broadcast, nw.self, nw.gateway} {
		p.mark(a)
	}
	for _, a := range nw.dns {
		p.mark(a)
	}
	for a := range nw.reservedBy {
		p.mark(a)
	}
	for a := range p.byIP {
		p.mark(a)
	}
	for a := range p.declined {
		p.mark(a)
	}
}

// index is a's place in the range.
func (p *pool) index(a netip.Addr) (uint32, bool) {
	if !a.Is4() {
		return 0, false
	}
	i := u32(a) - p.first
	return i, u32(a) >= p.first && i < p.size
}

func (p *pool) mark(a netip.Addr) {
	if i, ok := p.index(a); ok {
		p.taken[i/64] |= 1 << (i % 64)
	}
}

// unmark frees a in the map, unless something else keeps it.
func (p *pool) unmark(a netip.Addr) {
	i, ok := p.index(a)
	if !ok || p.nw.excluded(a) || p.byIP[a] != nil {
		return
	}
	if _, ok := p.declined[a]; ok {
		return
	}
	p.taken[i/64] &^= 1 << (i % 64)
}

// lowestFree is the lowest address of the range that nothing holds.
func (p *pool) lowestFree() (netip.Addr, bool) {
	for w, word := range p.taken {
		if word != ^uint64(0) {
			return addrOf(p.first + uint32(w)*64 + uint32(bits.TrailingZeros64(^word))), true //nolint:gosec // w < size/64
		}
	}
	return netip.Addr{}, false
}

// usable reports whether ip may be bound to mac.
func (p *pool) usable(mac site.MAC, ip netip.Addr) bool {
	if _, ok := p.index(ip); !ok || p.nw.excluded(ip) {
		return false
	}
	if _, ok := p.declined[ip]; ok {
		return false
	}
	b := p.byIP[ip]
	return b == nil || b.mac == mac
}

func (p *pool) add(b *binding) {
	p.byMAC[b.mac], p.byIP[b.ip] = b, b
	p.mark(b.ip)
}

func (p *pool) drop(b *binding) {
	if p.byMAC[b.mac] == b {
		delete(p.byMAC, b.mac)
	}
	if p.byIP[b.ip] == b {
		delete(p.byIP, b.ip)
	}
	p.unmark(b.ip)
}

// expire ends the offers and declines whose time is up.
func (p *pool) expire(now time.Time) {
	for len(p.offers) > 0 && !p.offers[0].until.After(now) {
		h := p.offers[0]
		p.offers = p.offers[1:]
		if b := p.byMAC[h.mac]; b != nil && b.offered && b.ip == h.ip && !b.expiry.After(now) {
			p.drop(b)
		}
	}
	for len(p.declines) > 0 && !p.declines[0].until.After(now) {
		h := p.declines[0]
		p.declines = p.declines[1:]
		if until, ok := p.declined[h.ip]; ok && !until.After(now) {
			delete(p.declined, h.ip)
			p.unmark(h.ip)
		}
	}
}

// offer picks an address for mac and holds it for offerHold.
func (p *pool) offer(mac site.MAC, now time.Time) (netip.Addr, []write, error) {
	p.expire(now)
	var writes []write
	if b := p.byMAC[mac]; b != nil {
		if p.usable(mac, b.ip) {
			if b.offered {
				b.expiry = now.Add(offerHold)
				p.offers = append(p.offers, hold{mac, b.ip, b.expiry})
			}
			return b.ip, nil, nil
		}
		// Its address went out of the range, or to a site host: it gets another.
		p.drop(b)
		if !b.offered {
			writes = append(writes, write{del: mac})
		}
	}
	ip, ok := p.lowestFree()
	if !ok {
		old := p.oldestExpired(now)
		if old == nil {
			return netip.Addr{}, writes, errPoolFull
		}
		p.drop(old)
		writes = append(writes, write{del: old.mac})
		ip = old.ip
	}
	b := &binding{mac: mac, ip: ip, expiry: now.Add(offerHold), offered: true}
	p.add(b)
	p.offers = append(p.offers, hold{mac, ip, b.expiry})
	return ip, writes, nil
}

// oldestExpired is the lease of the range that expired the longest ago (the lowest address
// of those that expired at the same time), nil when none has.
func (p *pool) oldestExpired(now time.Time) *binding {
	var old *binding
	for _, b := range p.byIP {
		if b.offered || b.expiry.After(now) || !p.usable(b.mac, b.ip) {
			continue
		}
		if old == nil || b.expiry.Before(old.expiry) || b.expiry.Equal(old.expiry) && b.ip.Less(old.ip) {
			old = b
		}
	}
	return old
}

// commit leases ip to mac for d when mac was offered it or holds it already; false when
// the client may not have it.
func (p *pool) commit(mac site.MAC, ip netip.Addr, hostname string, now time.Time, d time.Duration) (state.Lease, []write, bool) {
	p.expire(now)
	b := p.byMAC[mac]
	if b == nil || b.ip != ip || !p.usable(mac, ip) {
		return state.Lease{}, nil, false
	}
	b.offered, b.expiry = false, now.Add(d)
	if hostname != "" {
		b.hostname = hostname
	}
	l := state.Lease{MAC: mac, IP: ip, Expiry: b.expiry.UTC(), Hostname: b.hostname}
	return l, []write{{put: &l}}, true
}

// release ends mac's lease of ip; false when mac holds no such lease.
func (p *pool) release(mac site.MAC, ip netip.Addr) ([]write, bool) {
	b := p.byMAC[mac]
	if b == nil || b.ip != ip {
		return nil, false
	}
	p.drop(b)
	if b.offered {
		return nil, true
	}
	return []write{{del: mac}}, true
}

// decline ends mac's lease of ip, which the client found in use, and keeps ip out of the pool
// for declineHold; false when mac holds no such lease.
func (p *pool) decline(mac site.MAC, ip netip.Addr, now time.Time) ([]write, bool) {
	b := p.byMAC[mac]
	if b == nil || b.ip != ip {
		return nil, false
	}
	until := now.Add(declineHold)
	p.declined[ip] = until
	p.declines = append(p.declines, hold{mac, ip, until})
	writes, _ := p.release(mac, ip)
	return writes, true
}

// withdraw forgets the offer made to mac, which chose another server's.
func (p *pool) withdraw(mac site.MAC) {
	if b := p.byMAC[mac]; b != nil && b.offered {
		p.drop(b)
	}
}
