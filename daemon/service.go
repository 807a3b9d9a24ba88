package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"golang.org/x/sync/errgroup"
)

// A service is one long-running part of the daemon: the registry and API server, the
// converger, the site watcher, the watchdog (and, as they come, the PXE services). Run serves
// until ctx ends and then returns ctx.Err(), which is context.Canceled on a clean stop; any
// other error is a failure that stops the whole daemon.
type service interface {
	Run(ctx context.Context) error
}

// named gives a service the name its errors are reported under.
type named struct {
	name string
	service
}

// runServices runs every service under one errgroup until ctx ends or one of them fails. A
// failure cancels the others and is returned, wrapped with the failing service's name; a clean
// stop (ctx ended, every service returned) returns nil.
func runServices(ctx context.Context, svcs ...named) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, s := range svcs {
		g.Go(func() error {
			err := s.Run(gctx)
			switch {
			case err == nil && gctx.Err() == nil:
				return fmt.Errorf("%s stopped by itself", s.name)
			case err == nil || errors.Is(err, context.Canceled) && gctx.Err() != nil:
				return context.Canceled
			default:
				return fmt.Errorf("%s: %w", s.name, err)
			}
		})
	}
	err := g.Wait()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}

// httpServer serves the registry and the operator API on one listener, and shuts down
// gracefully (draining requests for at most drain) when ctx ends.
type httpServer struct {
	srv   *http.Server
	ln    net.Listener
	drain time.Duration
}

func newHTTPServer(ln net.Listener, h http.Handler) *httpServer {
	return &httpServer{srv: &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}, ln: ln, drain: 10 * time.Second}
}

// Run implements service.
func (s *httpServer) Run(ctx context.Context) error {
	served := make(chan error, 1)
	go func() { served <- s.srv.Serve(s.ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serving on %s: %w", s.ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.drain)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	return ctx.Err()
}

// watchdog feeds systemd's watchdog (WATCHDOG=1) only while the registry answers on its own
// listener and every loop it watches goes round, so that a wedged daemon gets restarted.
type watchdog struct {
	notify   func(string)
	log      *slog.Logger
	interval time.Duration // systemd's WatchdogSec; 0 turns the watchdog off
	probe    string        // URL of the registry's /v2/
	// alive reports whether the converging loop went round within the interval; nil when
	// there is no loop to watch.
	alive func(time.Duration) bool
}

// Run implements service.
func (w *watchdog) Run(ctx context.Context) error {
	if w.interval <= 0 {
		<-ctx.Done()
		return ctx.Err()
	}
	t := time.NewTicker(w.interval / 3)
	defer t.Stop()
	client := &http.Client{Timeout: 5 * time.Second}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if err := probe(ctx, client, w.probe); err != nil {
			if ctx.Err() == nil {
				w.log.Warn("registry health check failed; not feeding the watchdog", "err", err)
			}
			continue
		}
		if w.alive != nil && !w.alive(w.interval) {
			w.log.Warn("the converging loop is stuck; not feeding the watchdog")
			continue
		}
		w.notify("WATCHDOG=1")
	}
}

// probe GETs url and wants 200 OK.
func probe(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return errors.New("GET /v2/: " + resp.Status)
	}
	return nil
}

// reloader answers systemctl reload when there is no site to re-read (site_dir is empty), so
// that the reload completes instead of timing out.
type reloader struct {
	notify func(string)
	log    *slog.Logger
	reload <-chan os.Signal
	status string
}

// Run implements service.
func (r *reloader) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.reload:
			r.notify("RELOADING=1\nMONOTONIC_USEC=" + monotonicUsec())
			r.log.Info("reload requested; no site to re-read (site_dir is empty)")
			r.notify("READY=1\nSTATUS=" + r.status)
		}
	}
}

// loopback turns a listen address into one to reach it from this host.
func loopback(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return net.JoinHostPort(host, port)
}
