package dhcp

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/cairn-appliance/cairn/site"
)

// The UDP ports cairn serves: DHCP's, and the PXE boot server port proxy mode answers on too.
const (
	portDHCP = dhcpv4.ServerPort // 67
	portPXE  = 4011
)

// answer is what goes back for one request.
type answer struct {
	reply  *dhcpv4.DHCPv4
	dst    *net.UDPAddr
	hw     net.HardwareAddr // set for a unicast to an address the client does not answer ARP for yet
	wait   *batch           // lease writes to commit before the reply is sent
	client Client
}

// respond decides what to answer to req, received on port from peer, by the network nw;
// nil when nothing is to be sent. It never blocks on I/O: lease writes it made are in
// answer.wait.
func (s *Server) respond(nw *network, port int, peer *net.UDPAddr, req *dhcpv4.DHCPv4) *answer {
	if nw == nil || req.OpCode != dhcpv4.OpcodeBootRequest {
		return nil
	}
	if req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		s.refuse(req, site.MAC{}, "not an Ethernet client (hardware type "+req.HWType.String()+")")
		return nil
	}
	mac, _ := site.MACOf(req.ClientHWAddr)
	if mac.IsZero() || mac[0]&1 == 1 {
		s.refuse(req, mac, "the client's hardware address is not a network card's")
		return nil
	}
	if gi := addr(req.GatewayIPAddr); gi.IsValid() && (nw.mode != ModeFull || !nw.cidr.Contains(gi)) {
		s.refuse(req, mac, "relayed by "+gi.String()+": cairn answers only machines on its own segment ("+nw.cidr.String()+"), not through relays")
		return nil
	}
	var a *answer
	switch nw.mode {
	case ModeFull:
		if port != portDHCP {
			return nil
		}
		a = s.full(nw, req, mac)
	case ModeProxy:
		a = s.proxy(nw, port, req, mac)
	}
	if a != nil {
		a.dst, a.hw = destination(req, a.reply, port, peer)
	}
	return a
}

// full answers as the segment's DHCP server.
func (s *Server) full(nw *network, req *dhcpv4.DHCPv4, mac site.MAC) *answer {
	now := s.now()
	cl := Classify(req)
	res, known := nw.hosts[mac]
	fixed := known && res.ip.IsValid()
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		ip := res.ip
		if !fixed {
			s.mu.Lock()
			a, writes, err := s.pool.offer(mac, now)
			s.journal.add(writes) // deletes of leases taken over: nobody waits for them
			s.mu.Unlock()
			if err != nil {
				s.refuse(req, mac, err.Error())
				return nil
			}
			ip = a
		}
		return s.lease(nw, req, cl, mac, dhcpv4.MessageTypeOffer, ip)

	case dhcpv4.MessageTypeRequest:
		if sid := addr(req.ServerIdentifier()); sid.IsValid() && sid != nw.self {
			s.mu.Lock()
			s.pool.withdraw(mac)
			s.mu.Unlock()
			s.log.Debug("dhcp: ignored", "mac", mac, "type", "REQUEST", "reason", "the client chose the offer of server "+sid.String())
			return nil
		}
		ip := addr(req.RequestedIPAddress())
		if !ip.IsValid() {
			ip = addr(req.ClientIPAddr)
		}
		if !ip.IsValid() {
			s.refuse(req, mac, "a REQUEST with neither a requested address (option 50) nor ciaddr")
			return nil
		}
		if fixed {
			if ip != res.ip {
				return s.nak(nw, req, mac, fmt.Sprintf("%s is not the address of host %s (%s)", ip, res.name, res.ip))
			}
			return s.lease(nw, req, cl, mac, dhcpv4.MessageTypeAck, ip)
		}
		s.mu.Lock()
		_, writes, ok := s.pool.commit(mac, ip, req.HostName(), now, s.leaseTime)
		wait := s.journal.add(writes)
		s.mu.Unlock()
		if !ok {
			return s.nak(nw, req, mac, fmt.Sprintf("%s is not leased to %s", ip, mac))
		}
		a := s.lease(nw, req, cl, mac, dhcpv4.MessageTypeAck, ip)
		a.wait = wait
		return a

	case dhcpv4.MessageTypeDecline:
		ip := addr(req.RequestedIPAddress())
		if fixed {
			s.log.Warn("dhcp: a host found its fixed address in use by another machine", "host", res.name, "mac", mac, "ip", ip)
			return nil
		}
		s.mu.Lock()
		writes, ok := s.pool.decline(mac, ip, now)
		s.journal.add(writes)
		s.mu.Unlock()
		if !ok {
			s.refuse(req, mac, fmt.Sprintf("a DECLINE of %s, which is not leased to it", ip))
			return nil
		}
		s.log.Info("dhcp: address declined: another machine uses it; kept out of the pool", "mac", mac, "ip", ip, "for", declineHold)
		return nil

	case dhcpv4.MessageTypeRelease:
		ip := addr(req.ClientIPAddr)
		if fixed {
			return nil
		}
		s.mu.Lock()
		writes, ok := s.pool.release(mac, ip)
		s.journal.add(writes)
		s.mu.Unlock()
		if ok {
			s.log.Debug("dhcp: released", "mac", mac, "ip", ip)
		}
		return nil

	case dhcpv4.MessageTypeInform:
		ci := addr(req.ClientIPAddr)
		if !nw.cidr.Contains(ci) {
			s.refuse(req, mac, fmt.Sprintf("an INFORM from %v, outside %s", ci, nw.cidr))
			return nil
		}
		reply := s.reply(req, dhcpv4.MessageTypeAck, nw)
		reply.ClientIPAddr = req.ClientIPAddr
		s.options(reply, nw, false)
		return &answer{reply: reply, client: cl}
	}
	s.log.Debug("dhcp: ignored", "mac", mac, "type", req.MessageType().String())
	return nil
}

// proxy answers network boot clients with boot options and no address, beside another DHCP
// server: DISCOVERs on port 67, REQUESTs on port 4011 (and on 67 when they name cairn).
func (s *Server) proxy(nw *network, port int, req *dhcpv4.DHCPv4, mac site.MAC) *answer {
	cl := Classify(req)
	switch cl.Class {
	case NotNetboot:
		return nil // an ordinary client: the other DHCP server's
	case Unsupported:
		s.refuse(req, mac, fmt.Sprintf("no iPXE for architecture %s (option 93)", cl.Arch))
		return nil
	}
	mt := req.MessageType()
	var rt dhcpv4.MessageType
	switch {
	case mt == dhcpv4.MessageTypeDiscover && port == portDHCP:
		rt = dhcpv4.MessageTypeOffer
	case mt == dhcpv4.MessageTypeRequest && port == portPXE:
		rt = dhcpv4.MessageTypeAck
	case mt == dhcpv4.MessageTypeRequest && addr(req.ServerIdentifier()) == nw.self:
		rt = dhcpv4.MessageTypeAck
	default:
		return nil // the other server's part of the exchange
	}
	reply := s.reply(req, rt, nw)
	if rt == dhcpv4.MessageTypeAck {
		reply.ClientIPAddr = req.ClientIPAddr
	}
	s.boot(reply, req, cl, mac, nw)
	return &answer{reply: reply, client: cl}
}

// reply starts an answer of type t to req.
func (s *Server) reply(req *dhcpv4.DHCPv4, t dhcpv4.MessageType, nw *network) *dhcpv4.DHCPv4 {
	// NewReplyFromRequest only fails to draw a transaction ID, which WithReply replaces.
	reply, _ := dhcpv4.NewReplyFromRequest(req, dhcpv4.WithTransactionID(req.TransactionID))
	reply.UpdateOption(dhcpv4.OptMessageType(t))
	reply.UpdateOption(dhcpv4.OptServerIdentifier(nw.self.AsSlice()))
	return reply
}

// lease answers a DISCOVER or REQUEST in full mode with ip and everything that goes with it.
func (s *Server) lease(nw *network, req *dhcpv4.DHCPv4, cl Client, mac site.MAC, t dhcpv4.MessageType, ip netip.Addr) *answer {
	reply := s.reply(req, t, nw)
	reply.YourIPAddr = ip.AsSlice()
	s.options(reply, nw, true)
	if res, ok := nw.hosts[mac]; ok {
		reply.UpdateOption(dhcpv4.OptHostName(res.name))
	}
	s.boot(reply, req, cl, mac, nw)
	return &answer{reply: reply, client: cl}
}

// options adds the network's configuration: mask, router, DNS, NTP, domain and, for a lease,
// its times.
func (s *Server) options(reply *dhcpv4.DHCPv4, nw *network, lease bool) {
	reply.UpdateOption(dhcpv4.OptSubnetMask(net.CIDRMask(nw.cidr.Bits(), 32)))
	reply.UpdateOption(dhcpv4.OptBroadcastAddress(nw.broadcast.AsSlice()))
	if nw.gateway.IsValid() {
		reply.UpdateOption(dhcpv4.OptRouter(nw.gateway.AsSlice()))
	}
	if len(nw.dns) > 0 {
		reply.UpdateOption(dhcpv4.OptDNS(ips(nw.dns)...))
	}
	if len(nw.ntp) > 0 {
		reply.UpdateOption(dhcpv4.OptNTPServers(ips(nw.ntp)...))
	}
	if nw.domain != "" {
		reply.UpdateOption(dhcpv4.OptDomainName(nw.domain))
	}
	if lease {
		reply.UpdateOption(dhcpv4.OptIPAddressLeaseTime(s.leaseTime))
		reply.UpdateOption(dhcpv4.OptRenewTimeValue(s.leaseTime / 2))
		reply.UpdateOption(dhcpv4.OptRebindingTimeValue(s.leaseTime * 7 / 8))
	}
}

// boot adds what a network boot client of class cl boots: the file or URL, next-server, and
// the options firmware wants to see before it uses them.
func (s *Server) boot(reply, req *dhcpv4.DHCPv4, cl Client, mac site.MAC, nw *network) {
	if cl.Class == Unsupported {
		s.refuse(req, mac, fmt.Sprintf("no iPXE for architecture %s (option 93): the address only, no boot file", cl.Arch))
		return
	}
	file, next := s.boots.File(cl.Class, mac, nw.self)
	if file == "" {
		return
	}
	reply.BootFileName = file
	reply.ServerIPAddr = next.AsSlice()
	// PXE firmware ignores boot options in an answer without option 60 of its own kind.
	reply.UpdateOption(dhcpv4.OptClassIdentifier(cl.Vendor))
	if cl.Vendor == "PXEClient" {
		// PXE vendor options: discovery control (6) = 8: boot the file named here, without
		// boot server discovery.
		reply.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, []byte{6, 1, 8, 255}))
	}
	if uuid := req.Options.Get(dhcpv4.OptionClientMachineIdentifier); uuid != nil {
		reply.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, uuid))
	}
}

// nak refuses a REQUEST.
func (s *Server) nak(nw *network, req *dhcpv4.DHCPv4, mac site.MAC, why string) *answer {
	s.refuse(req, mac, why)
	reply := s.reply(req, dhcpv4.MessageTypeNak, nw)
	reply.UpdateOption(dhcpv4.OptMessage(why))
	return &answer{reply: reply}
}

// refuse logs why a request gets no answer (or a NAK).
func (s *Server) refuse(req *dhcpv4.DHCPv4, mac site.MAC, why string) {
	s.log.Info("dhcp: refused", "mac", mac, "type", req.MessageType().String(), "reason", why)
}

// destination is where an answer goes, as RFC 2131 section 4.1 says: to the relay (giaddr),
// a NAK by broadcast, to ciaddr when the client has an address, by broadcast when the client
// asked for it (the broadcast flag) or has no address yet to be offered, else to the offered
// address at the client's hardware address (hw set: the server must tell ARP). Answers on the
// PXE port go back where the request came from.
func destination(req, reply *dhcpv4.DHCPv4, port int, peer *net.UDPAddr) (*net.UDPAddr, net.HardwareAddr) {
	bcast := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
	switch {
	case port == portPXE:
		if ci := addr(req.ClientIPAddr); ci.IsValid() && peer != nil {
			return &net.UDPAddr{IP: ci.AsSlice(), Port: peer.Port}, nil
		}
		if peer != nil && addr(peer.IP).IsValid() {
			return peer, nil
		}
		return bcast, nil
	case addr(req.GatewayIPAddr).IsValid():
		if reply.MessageType() == dhcpv4.MessageTypeNak {
			reply.SetBroadcast()
		}
		return &net.UDPAddr{IP: req.GatewayIPAddr.To4(), Port: dhcpv4.ServerPort}, nil
	case reply.MessageType() == dhcpv4.MessageTypeNak:
		return bcast, nil
	case addr(req.ClientIPAddr).IsValid():
		return &net.UDPAddr{IP: req.ClientIPAddr.To4(), Port: dhcpv4.ClientPort}, nil
	case req.IsBroadcast():
		return bcast, nil
	case addr(reply.YourIPAddr).IsValid():
		return &net.UDPAddr{IP: reply.YourIPAddr.To4(), Port: dhcpv4.ClientPort}, req.ClientHWAddr
	}
	return bcast, nil
}

// addr is ip as a netip.Addr; invalid when ip is nil, unspecified or not IPv4.
func addr(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok || a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}

func ips(as []netip.Addr) []net.IP {
	out := make([]net.IP, len(as))
	for i, a := range as {
		out[i] = a.AsSlice()
	}
	return out
}
