package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"

	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/site"
)

// DefaultLeaseTime is how long a lease lasts when Config.LeaseTime is 0.
const DefaultLeaseTime = time.Hour

const (
	// maxInFlight bounds the requests handled at once (most of them waiting for their lease
	// to be written): past it the server reads no more, and the socket's buffer fills.
	maxInFlight = 256
	// commitWait is how long an ACK waits for its lease to reach the state before the client
	// is left to ask again.
	commitWait = 10 * time.Second
	// retryListen is how often a network that could not be listened on is tried again.
	retryListen = 30 * time.Second
)

// Config configures a Server.
type Config struct {
	// Site is the site to serve from the start; nil serves nothing until Update gives one.
	// Its [network] table says everything: the mode (dhcp), the interface, the appliance's
	// address, the CIDR, gateway, DNS, NTP and dhcp_range; its hosts are the reservations.
	Site *site.Site
	// State keeps the leases of the pool, so that a restart hands out the same addresses.
	// Required.
	State state.Store
	// Boot says where network boot clients fetch iPXE and its script.
	Boot Boot
	// LeaseTime is how long leases last; 0 means DefaultLeaseTime. At least a minute.
	LeaseTime time.Duration
	// Log gets a debug line for every offer and acknowledgement, an info line for every
	// refusal with its reason, and errors. Nil discards.
	Log *slog.Logger
	// Wait makes Run wait, logging and retrying every 30 s, when it cannot listen on the first
	// site's network (its interface is missing or lacks the appliance's address), as it does
	// for a later site, instead of failing: the daemon keeps serving its registry meanwhile.
	Wait bool
}

// Server is the DHCPv4 service. Run serves; Update changes the site it serves.
type Server struct {
	boots     Boot
	store     state.Store
	leaseTime time.Duration
	log       *slog.Logger
	now       func() time.Time

	mu      sync.Mutex // guards pool, and orders the writes added to journal
	pool    *pool
	journal *journal

	want    atomic.Pointer[network] // the latest site's network
	active  atomic.Pointer[network] // the one being served
	changed chan struct{}
	running atomic.Bool
	wait    bool
	problem atomic.Pointer[string] // why the wanted network is not served, nil when it is

	sem      chan struct{}
	handlers sync.WaitGroup
}

// New checks cfg and returns a server; it opens nothing: Run does.
func New(cfg Config) (*Server, error) {
	if cfg.State == nil {
		return nil, errors.New("dhcp: Config.State is nil; the leases need the state store")
	}
	if err := cfg.Boot.check(); err != nil {
		return nil, err
	}
	lt := cfg.LeaseTime
	switch {
	case lt == 0:
		lt = DefaultLeaseTime
	case lt < time.Minute:
		return nil, fmt.Errorf("dhcp: Config.LeaseTime %v is shorter than a minute", lt)
	case lt > 365*24*time.Hour:
		return nil, fmt.Errorf("dhcp: Config.LeaseTime %v is longer than a year", lt)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		boots: cfg.Boot, store: cfg.State, leaseTime: lt.Truncate(time.Second), log: log, now: time.Now,
		pool: newPool(), journal: newJournal(cfg.State),
		changed: make(chan struct{}, 1), sem: make(chan struct{}, maxInFlight), wait: cfg.Wait,
	}
	if cfg.Site != nil {
		nw := fromSite(cfg.Site)
		if err := checkNetwork(nw); err != nil {
			return nil, err
		}
		s.want.Store(nw)
	}
	return s, nil
}

// checkNetwork checks what the site loader cannot know is needed here.
func checkNetwork(nw *network) error {
	switch nw.mode {
	case ModeOff:
		return nil
	case ModeFull, ModeProxy:
	default:
		return fmt.Errorf(`dhcp: network.dhcp = %q in site.toml: want "full", "proxy" or "off"`, nw.mode)
	}
	switch {
	case nw.iface == "":
		return errors.New("dhcp: network.interface in site.toml is empty: name the interface that faces the hosts")
	case !nw.cidr.IsValid() || !nw.cidr.Addr().Is4():
		return fmt.Errorf("dhcp: network.cidr %v in site.toml is not an IPv4 network", nw.cidr)
	case !nw.self.Is4() || !nw.cidr.Contains(nw.self):
		return fmt.Errorf("dhcp: network.appliance_ip %v in site.toml is not an address of network.cidr %s", nw.self, nw.cidr)
	case nw.mode == ModeFull && nw.pool == nil:
		return errors.New(`dhcp: network.dhcp = "full" in site.toml needs network.dhcp_range`)
	}
	return nil
}

// Update makes the server serve s: its reservations, options, range and mode take effect at
// once, without a restart; a new interface or address is listened on before the old one is
// left. A site the server cannot serve is logged and ignored. Safe for concurrent use.
func (s *Server) Update(st *site.Site) {
	nw := fromSite(st)
	if err := checkNetwork(nw); err != nil {
		s.log.Error("dhcp: not serving the new site: " + err.Error())
		return
	}
	if len(nw.ntpNames) > 0 && nw.mode == ModeFull {
		s.log.Warn("dhcp: network.ntp names servers by name, which DHCP (option 42) cannot carry: hosts get only the addresses", "names", nw.ntpNames)
	}
	s.want.Store(nw)
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Run serves DHCP until ctx ends, then returns ctx.Err(). It reads the leases from the state
// first. When the first site's interface cannot be listened on (no such interface, or not
// the site's appliance_ip on it, or port 67 taken), Run returns why; a later site's network
// Problem says why the site's network is not served ("" when it is, or when DHCP is off):
// for the daemon's status.
func (s *Server) Problem() string {
	if p := s.problem.Load(); p != nil {
		return *p
	}
	return ""
}

// that cannot be listened on is logged, the previous one kept, and tried again every 30 s.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("dhcp: Run called twice")
	}
	var leases []state.Lease
	err := s.store.View(ctx, func(tx state.Tx) (err error) {
		leases, err = tx.Leases()
		return err
	})
	if err != nil {
		return fmt.Errorf("dhcp: reading the leases: %w", err)
	}
	s.mu.Lock()
	s.pool.load(leases)
	s.mu.Unlock()

	jctx, jstop := context.WithCancel(context.WithoutCancel(ctx))
	jdone := make(chan struct{})
	go func() {
		defer close(jdone)
		s.journal.run(jctx)
	}()
	defer func() {
		jstop()
		<-jdone
	}()

	var (
		l     *listener
		first = true
		retry <-chan time.Time
	)
	defer func() {
		if l != nil {
			l.close()
		}
		s.handlers.Wait() // before the journal's last commit
	}()
	for {
		nw, act := s.want.Load(), s.active.Load()
		switch {
		case nw == nil || nw == act:
		case act != nil && nw.sameListener(act):
			s.activate(nw)
		case nw.mode == ModeOff:
			s.problem.Store(nil)
			if l != nil {
				l.close()
				l = nil
			}
			s.activate(nw)
			first = false
			s.log.Info(`dhcp: off (network.dhcp = "off" in site.toml): answering nothing`)
		default:
			nl, err := s.listen(nw)
			if err != nil {
				if first && !s.wait {
					return err
				}
				msg := err.Error()
				s.problem.Store(&msg)
				if l == nil {
					s.log.Error("dhcp: not serving yet: "+msg, "retry", retryListen)
				} else {
					s.log.Error("dhcp: still serving the previous network: "+msg, "retry", retryListen)
				}
				retry = time.After(retryListen)
				break
			}
			s.problem.Store(nil)
			if l != nil {
				l.close()
			}
			l, first = nl, false
			s.activate(nw)
			l.serve(s)
			s.log.Info("dhcp: serving", "mode", nw.mode, "interface", nw.iface, "address", nw.self)
		}
		var errc <-chan error
		if l != nil {
			errc = l.errc
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.changed:
		case <-retry:
			retry = nil
		case err := <-errc:
			return fmt.Errorf("dhcp: reading on %s: %w", l.iface, err)
		}
	}
}

// activate makes nw the network answers are made from.
func (s *Server) activate(nw *network) {
	s.mu.Lock()
	s.pool.setNetwork(nw)
	s.mu.Unlock()
	s.active.Store(nw)
}

// listener is the sockets of one network: port 67 and, in proxy mode, 4011, each bound to the
// site's interface (SO_BINDTODEVICE), so that nothing arriving on another interface reaches
// them and nothing they send leaves by another.
type listener struct {
	iface string
	conns []*net.UDPConn
	ports []int
	errc  chan error
	wg    sync.WaitGroup
}

func (s *Server) listen(nw *network) (*listener, error) {
	if err := checkInterface(nw, s.log); err != nil {
		return nil, err
	}
	ports := []int{portDHCP}
	if nw.mode == ModeProxy {
		ports = append(ports, portPXE)
	}
	l := &listener{iface: nw.iface, errc: make(chan error, len(ports))}
	for _, p := range ports {
		c, err := server4.NewIPv4UDPConn(nw.iface, &net.UDPAddr{Port: p})
		if err != nil {
			l.close()
			return nil, fmt.Errorf("dhcp: listening on %s (network.interface in site.toml) port %d: %w", nw.iface, p, err)
		}
		_ = c.SetReadBuffer(1 << 20) // bursts of a rack powering on
		l.conns, l.ports = append(l.conns, c), append(l.ports, p)
	}
	return l, nil
}

// checkInterface checks that the site's interface exists and has the appliance's address.
func checkInterface(nw *network, log *slog.Logger) error {
	ifi, err := net.InterfaceByName(nw.iface)
	if err != nil {
		var names []string
		if all, err := net.Interfaces(); err == nil {
			for _, i := range all {
				names = append(names, i.Name)
			}
		}
		return fmt.Errorf("dhcp: network.interface = %q in site.toml: this machine has no such interface (it has %s)", nw.iface, strings.Join(names, ", "))
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return fmt.Errorf("dhcp: reading the addresses of %s: %w", nw.iface, err)
	}
	var have []string
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if addr(n.IP) == nw.self {
				if ifi.Flags&net.FlagUp == 0 {
					log.Warn("dhcp: the interface is down; nothing will arrive until it is up", "interface", nw.iface)
				}
				return nil
			}
			have = append(have, n.String())
		}
	}
	if len(have) == 0 {
		have = []string{"no address"}
	}
	return fmt.Errorf("dhcp: interface %s (network.interface in site.toml) does not have network.appliance_ip %s (it has %s): give it that address, or correct site.toml",
		nw.iface, nw.self, strings.Join(have, ", "))
}

// serve reads every socket and hands each packet to a handler.
func (l *listener) serve(s *Server) {
	for i, c := range l.conns {
		port := l.ports[i]
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			buf := make([]byte, 1<<16)
			for {
				n, peer, err := c.ReadFromUDP(buf)
				if err != nil {
					if !errors.Is(err, net.ErrClosed) {
						l.errc <- err
					}
					return
				}
				pkt := append([]byte(nil), buf[:n]...)
				s.sem <- struct{}{}
				s.handlers.Add(1)
				go func() {
					defer func() {
						<-s.sem
						s.handlers.Done()
					}()
					s.handle(c, l.iface, port, peer, pkt)
				}()
			}
		}()
	}
}

// close closes the sockets and waits for their read loops.
func (l *listener) close() {
	for _, c := range l.conns {
		_ = c.Close()
	}
	l.wg.Wait()
}

// handle answers one packet.
func (s *Server) handle(c *net.UDPConn, iface string, port int, peer *net.UDPAddr, b []byte) {
	req, err := dhcpv4.FromBytes(b)
	if err != nil {
		s.log.Debug("dhcp: not a DHCP packet", "from", peer, "err", err)
		return
	}
	a := s.respond(s.active.Load(), port, peer, req)
	if a == nil {
		return
	}
	if a.wait != nil {
		t := time.NewTimer(commitWait)
		defer t.Stop()
		select {
		case <-a.wait.done:
		case <-t.C:
			s.log.Error("dhcp: the state took too long to keep a lease; not acknowledging it (the client will ask again)", "mac", req.ClientHWAddr)
			return
		}
		if a.wait.err != nil {
			s.log.Error("dhcp: not acknowledging a lease the state did not keep (the client will ask again): "+a.wait.err.Error(), "mac", req.ClientHWAddr)
			return
		}
	}
	s.send(c, iface, a)
}

// send writes an answer, telling ARP where the client is first when it is sent to an
// address the client does not answer for yet.
func (s *Server) send(c *net.UDPConn, iface string, a *answer) {
	dst := a.dst
	if a.hw != nil {
		if err := setARP(c, iface, dst.IP, a.hw); err != nil {
			s.log.Debug("dhcp: cannot add an ARP entry; broadcasting the answer instead", "ip", dst.IP, "err", err)
			dst = &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
		}
	}
	if _, err := c.WriteToUDP(a.reply.ToBytes(), dst); err != nil {
		s.log.Warn("dhcp: sending an answer", "to", dst, "err", err)
		return
	}
	s.log.Debug("dhcp: "+strings.ToLower(a.reply.MessageType().String()), "mac", a.reply.ClientHWAddr, "ip", a.reply.YourIPAddr,
		"class", a.client.Class.String(), "file", a.reply.BootFileName, "to", dst)
}
