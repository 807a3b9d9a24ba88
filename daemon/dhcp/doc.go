// Package dhcp is the daemon's DHCPv4 service: it gets the hosts of a site on the network
// and hands network boot clients the way to iPXE and their iPXE script. It speaks DHCP with
// github.com/insomniacslk/dhcp, on sockets bound to the site's network.interface only
// (SO_BINDTODEVICE), after checking that the interface has the site's appliance_ip; nothing
// that arrives on any other interface is answered.
//
// The site's network.dhcp chooses the mode:
//
//   - full: cairn is the segment's DHCP server. A site host gets its fixed ip, its name and
//     the site's domain; a machine not in the site (and a host without ip) gets the lowest
//     free address of dhcp_range, leased for Config.LeaseTime and kept in the state store
//     (state.Lease), so that it gets the same address again, after a restart too. Expired
//     leases are reused only when no address is free. No address is ever leased outside the
//     CIDR, nor the appliance's, the gateway's, a DNS server's or a site host's. Answers carry
//     the mask, router, DNS, NTP (addresses only) and domain. DECLINE keeps the address out of
//     the pool for ten minutes (in memory); RELEASE frees it; INFORM is answered.
//   - proxy: another DHCP server hands out addresses; cairn answers only network boot clients
//     (option 60 PXEClient or HTTPClient, or user class iPXE), on port 67 (OFFER) and port
//     4011 (ACK), with boot options and never an address (yiaddr 0).
//   - off: cairn answers nothing (docs/operations.md says how to point another server at it).
//
// Clients are classified by options 93 (architecture), 60 and 77 (see Classify): firmware
// PXE gets undionly.kpxe (BIOS) or ipxe.efi (x86-64 UEFI) by TFTP from next-server; UEFI
// HTTP boot gets Boot.HTTPBase+"/boot/ipxe.efi"; iPXE itself gets the URL of its script,
// Boot.HTTPBase+"/boot/ipxe?mac=MAC&platform=${platform}", so it never loads iPXE again. PXE answers echo option
// 60, carry option 43 with discovery control 8 (boot the named file, no boot server
// discovery) and echo option 97 (the machine's UUID). Update changes the site served, its
// reservations and its mode without a restart.
//
// A lease belongs to the client's MAC (chaddr, compared as site.MAC); the client identifier
// (option 61) is echoed, as RFC 6842 wants, but does not name the lease.
//
// Replies go where RFC 2131 section 4.1 says: to ciaddr, by broadcast when the client asks
// for it (or for a NAK), else to the offered address at the client's MAC (through an ARP
// entry the server adds). It does not serve other segments through DHCP relays: a relayed
// request is answered only when the relay itself is on the site's segment (giaddr inside
// network.cidr, as with a test tool such as perfdhcp); any other is refused. It does not do
// DHCPv6, DNS, dynamic DNS updates, option 82 policies or failover between servers, and it
// does not decide what a host boots after iPXE: package daemon/boot's script does.
package dhcp
