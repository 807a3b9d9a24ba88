//go:build !linux

package dhcp

import (
	"errors"
	"net"
)

// setARP is Linux only: elsewhere such answers are broadcast.
func setARP(*net.UDPConn, string, net.IP, net.HardwareAddr) error {
	return errors.New("dhcp: adding ARP entries is implemented for Linux only")
}
