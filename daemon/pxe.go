package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/cairn-appliance/cairn/daemon/tftp"
	"github.com/cairn-appliance/cairn/site"
)

// tftpRetry is how often a TFTP server that could not start is tried again.
const tftpRetry = 30 * time.Second

// tftpService keeps a TFTP server of the iPXE binaries running on the site's provisioning
// interface and address, as the applied site says: it starts one once the interface holds
// the appliance's address, and moves it when the site names another. It never stops the
// daemon: until it serves, it logs why and says so in Problem, and tries again.
type tftpService struct {
	files tftp.Files
	log   *slog.Logger

	mu      sync.Mutex
	want    site.Network // the applied site's network
	has     bool
	problem string
	changed chan struct{}
}

func newTFTPService(files tftp.Files, log *slog.Logger) *tftpService {
	return &tftpService{files: files, log: log, changed: make(chan struct{}, 1)}
}

// Update tells the service the network of the site just applied.
func (t *tftpService) Update(s *site.Site) {
	t.mu.Lock()
	same := t.has && sameEndpoint(t.want, s.Network)
	t.want, t.has = s.Network, true
	t.mu.Unlock()
	if !same {
		select {
		case t.changed <- struct{}{}:
		default:
		}
	}
}

// Problem says why no TFTP server runs where the site wants one, "" when it does.
func (t *tftpService) Problem() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.problem
}

func sameEndpoint(a, b site.Network) bool {
	return a.Interface == b.Interface && a.ApplianceIP == b.ApplianceIP
}

// Run implements service.
func (t *tftpService) Run(ctx context.Context) error {
	var (
		cur   site.Network
		child *running // the server serving cur, nil when none runs
		retry <-chan time.Time
	)
	defer func() { child.halt() }()
	for {
		t.mu.Lock()
		want, has := t.want, t.has
		t.mu.Unlock()
		if has && (child == nil || !sameEndpoint(cur, want)) {
			child.halt()
			child = nil
			srv, err := startTFTP(want, t.files, t.log)
			t.mu.Lock()
			t.problem = ""
			if err != nil {
				t.problem = err.Error()
			}
			t.mu.Unlock()
			if err != nil {
				t.log.Error("tftp: not serving: "+err.Error(), "retry", tftpRetry)
				retry = time.After(tftpRetry)
			} else {
				child, cur = run(ctx, srv), want
				t.log.Info("tftp: serving the iPXE binaries", "interface", want.Interface, "address", srv.Addr())
			}
		}
		var done <-chan error
		if child != nil {
			done = child.done
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.changed:
		case <-retry:
			retry = nil
		case err := <-done:
			child.stop()
			child = nil
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("tftp on %s: %w", cur.Interface, err)
		}
	}
}

// running is a service run under a context of its own, to stop it alone.
type running struct {
	stop context.CancelFunc
	done chan error
}

func run(ctx context.Context, s service) *running {
	sctx, stop := context.WithCancel(ctx)
	r := &running{stop: stop, done: make(chan error, 1)}
	go func() { r.done <- s.Run(sctx) }()
	return r
}

// halt stops the service and waits for it; a nil one is no-op.
func (r *running) halt() {
	if r == nil {
		return
	}
	r.stop()
	<-r.done
}

// startTFTP starts a TFTP server on the appliance's address of the site's network, bound to
// its interface, once that interface holds the address.
func startTFTP(nw site.Network, files tftp.Files, log *slog.Logger) (*tftp.Server, error) {
	if err := holds(nw.Interface, nw.ApplianceIP); err != nil {
		return nil, err
	}
	return tftp.New(tftp.Config{Addr: netip.AddrPortFrom(nw.ApplianceIP, 69).String(), Interface: nw.Interface, Files: files, Log: log})
}

// holds checks that the interface named in site.toml exists and holds the appliance's address.
func holds(name string, ip netip.Addr) error {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return fmt.Errorf("network.interface = %q in site.toml: no such interface on this machine", name)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return fmt.Errorf("network.interface = %q: %w", name, err)
	}
	for _, a := range addrs {
		if p, ok := a.(*net.IPNet); ok {
			if got, ok := netip.AddrFromSlice(p.IP); ok && got.Unmap() == ip {
				return nil
			}
		}
	}
	return errors.New("interface " + name + " does not hold network.appliance_ip " + ip.String() + " of site.toml")
}
