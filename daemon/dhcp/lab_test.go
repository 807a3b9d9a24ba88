package dhcp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"
)

// lab is a small network the test makes out of network namespaces, so that real DHCP
// packets flow between real sockets and never leave the machine:
//
//	srv: cairn's; site0 192.0.2.1/24 on the segment, other0 198.51.100.1/24 to cli's other1
//	cli: the clients'; cli0 on the segment (promiscuous, for clients with made-up MACs), other1
//	anc: another DHCP server's (dnsmasq); anc0 192.0.2.2/24 on the segment
//	lan: the segment: bridge br0 joining site0, cli0 and anc0
//
// Every interface is made inside a namespace, so no name ever appears in the machine's own.
type lab struct {
	srv, cli, anc, lan string
}

var labSeq atomic.Int32

// newLab makes the namespaces and deletes them when the test ends. It skips the test when
// not root or when network namespaces cannot be made here.
func newLab(t testing.TB) *lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to make network namespaces (ip netns add); run as root to test DHCP on real sockets")
	}
	if testing.Short() {
		t.Skip("-short: skipping the network namespace tests")
	}
	removeStaleNetns("cairn-dhcp-")
	p := fmt.Sprintf("cairn-dhcp-%d-%d-", os.Getpid(), labSeq.Add(1))
	l := &lab{srv: p + "srv", cli: p + "cli", anc: p + "anc", lan: p + "lan"}
	if out, err := exec.Command("ip", "netns", "add", l.srv).CombinedOutput(); err != nil {
		t.Skipf("ip netns add failed (%v: %s): network namespaces are not available here", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		for _, ns := range []string{l.srv, l.cli, l.anc, l.lan} {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{l.cli, l.anc, l.lan} {
		run("netns", "add", ns)
	}
	for _, ns := range []string{l.srv, l.cli, l.anc, l.lan} {
		run("-n", ns, "link", "set", "lo", "up")
	}
	run("-n", l.lan, "link", "add", "br0", "type", "bridge")
	run("-n", l.lan, "link", "set", "br0", "up")
	for _, e := range []struct{ ns, dev, port string }{{l.srv, "site0", "p-srv"}, {l.cli, "cli0", "p-cli"}, {l.anc, "anc0", "p-anc"}} {
		run("-n", e.ns, "link", "add", e.dev, "type", "veth", "peer", "name", e.port, "netns", l.lan)
		run("-n", l.lan, "link", "set", e.port, "master", "br0", "up")
		run("-n", e.ns, "link", "set", e.dev, "up")
	}
	run("-n", l.srv, "addr", "add", "192.0.2.1/24", "dev", "site0")
	run("-n", l.anc, "addr", "add", "192.0.2.2/24", "dev", "anc0")
	run("-n", l.cli, "link", "set", "cli0", "promisc", "on")
	run("-n", l.srv, "link", "add", "other0", "type", "veth", "peer", "name", "other1", "netns", l.cli)
	run("-n", l.srv, "addr", "add", "198.51.100.1/24", "dev", "other0")
	run("-n", l.srv, "link", "set", "other0", "up")
	run("-n", l.cli, "link", "set", "other1", "up", "promisc", "on")
	return l
}

// removeStaleNetns deletes the namespaces named prefix+PID-... of test processes that died
// before their cleanup ran.
func removeStaleNetns(prefix string) {
	entries, _ := os.ReadDir("/var/run/netns")
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		pid, _, _ := strings.Cut(rest, "-")
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue // its process is alive: its own
		}
		_ = exec.Command("ip", "netns", "del", e.Name()).Run()
	}
}

// inNetns runs fn on an OS thread that it moves into namespace ns; the thread is never moved
// back, but ends with fn, so that nothing else ever runs in the namespace by mistake.
// Sockets fn opens stay in ns wherever they are used later.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := enterNetns(ns); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

func enterNetns(ns string) error {
	f, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET) //nolint:gosec // an fd
}

// ipIn runs ip in namespace ns.
func (l *lab) ip(t testing.TB, ns string, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", ns, strings.Join(args, " "), err, out)
	}
}

// runServer runs a server in cairn's namespace until stop is called or the test ends, and
// waits until it listens.
func runServer(t testing.TB, l *lab, cfg Config) (srv *Server, stop func()) {
	t.Helper()
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: Run's goroutine stays in the namespace
		if err := enterNetns(l.srv); err != nil {
			done <- err
			return
		}
		done <- srv.Run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("Run() = %v, want context.Canceled", err)
			}
		})
	}
	t.Cleanup(stop)
	for deadline := time.Now().Add(5 * time.Second); srv.active.Load() == nil; time.Sleep(5 * time.Millisecond) {
		select {
		case err := <-done:
			once.Do(cancel)
			t.Fatalf("Run() = %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the server did not start listening within 5s")
		}
	}
	return srv, stop
}

// sniffer records the DHCP packets an interface sends and receives, from a raw socket of its
// own: what a server really put on the wire, whatever the server thinks it sent.
type sniffer struct {
	fd   int
	stop atomic.Bool
	done chan struct{}
	mu   sync.Mutex
	pkts []sniffed
}

type sniffed struct {
	outgoing bool
	src, dst netip.AddrPort
	dstMAC   net.HardwareAddr
	msg      *dhcpv4.DHCPv4
}

func sniff(t testing.TB, ns, iface string) *sniffer {
	t.Helper()
	s := &sniffer{done: make(chan struct{})}
	err := inNetns(ns, func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_ALL))
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		s.fd = fd
		tv := unix.Timeval{Usec: 100_000}
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatalf("sniffing %s in %s: %v", iface, ns, err)
	}
	go s.loop()
	t.Cleanup(s.close)
	return s
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (s *sniffer) loop() {
	defer close(s.done)
	buf := make([]byte, 1<<16)
	for !s.stop.Load() {
		n, from, err := unix.Recvfrom(s.fd, buf, 0)
		if err != nil {
			continue // the timeout, to look at stop again
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok || n < 14+20+8 || binary.BigEndian.Uint16(buf[12:14]) != 0x0800 {
			continue
		}
		ip := buf[14:n]
		ihl := int(ip[0]&0x0f) * 4
		if ip[9] != unix.IPPROTO_UDP || len(ip) < ihl+8 {
			continue
		}
		udp := ip[ihl:]
		sport, dport := binary.BigEndian.Uint16(udp[0:2]), binary.BigEndian.Uint16(udp[2:4])
		if !isDHCPPort(sport) && !isDHCPPort(dport) {
			continue
		}
		m, err := dhcpv4.FromBytes(udp[8:])
		if err != nil {
			continue
		}
		src, _ := netip.AddrFromSlice(ip[12:16])
		dst, _ := netip.AddrFromSlice(ip[16:20])
		s.mu.Lock()
		s.pkts = append(s.pkts, sniffed{
			outgoing: ll.Pkttype == unix.PACKET_OUTGOING,
			src:      netip.AddrPortFrom(src, sport), dst: netip.AddrPortFrom(dst, dport),
			dstMAC: append(net.HardwareAddr(nil), buf[0:6]...), msg: m,
		})
		s.mu.Unlock()
	}
}

func isDHCPPort(p uint16) bool { return p == 67 || p == 68 || p == portPXE }

// sent is what the interface sent, so far.
func (s *sniffer) sent() []sniffed {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []sniffed
	for _, p := range s.pkts {
		if p.outgoing {
			out = append(out, p)
		}
	}
	return out
}

// waitSent waits (up to 3 s) for a sent packet that match accepts, and returns it; nil if
// none came.
func (s *sniffer) waitSent(match func(sniffed) bool) *sniffed {
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, p := range s.sent() {
			if match(p) {
				return &p
			}
		}
	}
	return nil
}

// received is what arrived on the interface, so far.
func (s *sniffer) received() []sniffed {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []sniffed
	for _, p := range s.pkts {
		if !p.outgoing {
			out = append(out, p)
		}
	}
	return out
}

func (s *sniffer) close() {
	if s.stop.Swap(true) {
		return
	}
	<-s.done
	_ = unix.Close(s.fd)
}
