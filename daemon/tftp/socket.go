package tftp

import (
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// control sets a socket's options before it binds: SO_BINDTODEVICE when an interface is
// named, and IP_PKTINFO on the server's socket so that each request tells which of the
// host's addresses it came to.
func control(iface string, pktinfo bool) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if iface != "" {
				if serr = unix.BindToDevice(int(fd), iface); serr != nil {
					return
				}
			}
			if pktinfo {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
}

// localAddr reads the local address a request came to from its IP_PKTINFO control message:
// the address to answer from, even when the server listens on every address.
func localAddr(oob []byte) netip.Addr {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return netip.Addr{}
	}
	for _, m := range msgs {
		if m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= unix.SizeofInet4Pktinfo {
			// struct in_pktinfo: int ipi_ifindex; struct in_addr ipi_spec_dst, ipi_addr.
			var spec [4]byte
			copy(spec[:], m.Data[4:8])
			if a := netip.AddrFrom4(spec); !a.IsUnspecified() {
				return a
			}
		}
	}
	return netip.Addr{}
}

// pktinfo is the control message that makes a reply leave from local; nil when it is unknown.
func pktinfo(local netip.Addr) []byte {
	if !local.IsValid() || !local.Is4() {
		return nil
	}
	return unix.PktInfo4(&unix.Inet4Pktinfo{Spec_dst: local.As4()})
}
