package dhcp

import (
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// arpreq is Linux's struct arpreq (netinet/if_arp.h).
type arpreq struct {
	pa    unix.RawSockaddrInet4
	ha    unix.RawSockaddr
	flags int32
	mask  unix.RawSockaddrInet4
	dev   [16]byte
}

const atfCom = 0x02 // ATF_COM: the entry is complete

// setARP tells the kernel that ip is at hw on iface (in the network namespace of c), so that
// an answer can be sent to an address the client does not answer ARP for yet, as RFC 2131
// wants for clients that did not ask for broadcast. The entry ages out as any other.
func setARP(c *net.UDPConn, iface string, ip net.IP, hw net.HardwareAddr) error {
	var req arpreq
	req.pa.Family = unix.AF_INET
	copy(req.pa.Addr[:], ip.To4())
	req.ha.Family = unix.ARPHRD_ETHER
	for i, b := range hw {
		if i == len(req.ha.Data) {
			break
		}
		req.ha.Data[i] = int8(b) //nolint:gosec // the kernel reads the bytes back as they are
	}
	req.flags = atfCom
	copy(req.dev[:len(req.dev)-1], iface)
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, fd, unix.SIOCSARP, uintptr(unsafe.Pointer(&req))); e != 0 { //nolint:gosec // the ioctl's argument
			serr = e
		}
	})
	if err != nil {
		return err
	}
	return serr
}
