// Package dhcp benchmarks cairn's DHCP service (package daemon/dhcp, full mode, leases kept
// in a bbolt state file on disk) against its anchor, dnsmasq, leasing the same pool to the
// same load: Kea's perfdhcp (/usr/sbin/perfdhcp, Debian's kea-admin) doing DORA exchanges
// from a network namespace of its own to a server in another, joined by a veth pair, so that
// no packet leaves the machine. It reports each server's completed exchanges per second
// under overload, their ratio, and the drops of each at the anchor's rate. It holds only
// benchmarks; run them as root with make bench.
package dhcp
