package dhcp

import (
	"context"
	"log/slog"
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// FuzzHandle feeds any bytes to the packet handler, as the sockets would, in both modes and
// on both ports: it must never panic.
func FuzzHandle(f *testing.F) {
	for _, mods := range [][]dhcpv4.Modifier{nil, optBIOS, optUEFI7, optHTTP, optIPXE, optARM} {
		m, _ := dhcpv4.NewDiscovery(net.HardwareAddr(webMAC[:]), mods...)
		f.Add(m.ToBytes())
		m.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeRequest))
		m.UpdateOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("192.0.2.100")))
		f.Add(m.ToBytes())
	}
	f.Add([]byte{})
	full := newUnitServer(f, testSite(ModeFull, "site0"))
	proxy := newUnitServer(f, testSite(ModeProxy, "site0"))
	full.log, proxy.log = slog.New(slog.DiscardHandler), slog.New(slog.DiscardHandler) // refusals by the million
	peer := &net.UDPAddr{IP: net.IPv4zero, Port: 68}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		for _, u := range []*unitServer{full, proxy} {
			for _, port := range []int{portDHCP, portPXE} {
				if a := u.respond(u.active.Load(), port, peer, req); a != nil {
					_ = a.reply.ToBytes()
				}
			}
			u.journal.commit(context.Background())
		}
	})
}
