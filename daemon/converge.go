package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-appliance/cairn/daemon/api"
	"github.com/cairn-appliance/cairn/daemon/reconcile"
	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/daemon/watch"
	"github.com/cairn-appliance/cairn/site"
)

// converger keeps the state converged on the site directory: it loads the site whenever it
// changes (or a reload is asked for), applies it when it is valid, and keeps the last good
// site when it is not, publishing why.
type converger struct {
	watch  *watch.Watcher
	st     state.Store
	log    *slog.Logger
	notify func(string) // sd_notify lines

	// The loader parses again only the files the watcher reports changed, and the applier
	// encodes again only the hosts that changed.
	loader  *site.Loader
	applier *reconcile.Applier

	// ephemeral starts every STATUS= line when the appliance has no data disk, and serving
	// ends it: what the registry serves, and where. Set before start.
	ephemeral, serving string
	// reload delivers reload requests (systemctl reload cairn). Set before Run.
	reload <-chan os.Signal
	// applied are told every site the state now follows (the PXE services), and problems
	// say why one of them does not serve ("" when it does), for STATUS=. Set before start.
	applied  []func(*site.Site)
	problems []func() string
	// lastProblems is the problems' text in the last STATUS= line (under mu).
	lastProblems string

	mu  sync.Mutex
	cur api.Current

	// between is held by each load: a backup takes it to copy the state and the site as one
	// load left them. loaded (under mu) is closed when a load ends (backup.go).
	between sync.Mutex
	loaded  chan struct{}

	// beat is when the loop last went round (unix nanoseconds): the watchdog is fed only while
	// it is recent, so a wedged loop gets the daemon restarted.
	beat atomic.Int64
}

// newConverger returns a converger of the site directory w watches. Its watcher is a service
// of its own, run beside it.
func newConverger(w *watch.Watcher, st state.Store, log *slog.Logger, notify func(string)) *converger {
	c := &converger{watch: w, st: st, log: log, notify: notify, loader: site.NewLoader(w.Dir()), applier: reconcile.NewApplier(st)}
	var last time.Time
	c.applier.Progress = func(done, total int) {
		// A first apply of thousands of hosts takes a while: say how far it is, every second.
		if done < total && time.Since(last) >= time.Second {
			last = time.Now()
			c.log.Info("applying the site", "done", done, "total", total)
		}
	}
	return c
}

// Current implements api.Config.Current.
func (c *converger) Current() api.Current {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

// alive reports whether the loop went round within d.
func (c *converger) alive(d time.Duration) bool {
	return time.Since(time.Unix(0, c.beat.Load())) < d
}

// load reads the site and applies it if it is valid. It never applies half a site: an invalid
// one changes nothing but the recorded attempt and the published error. ch says why, and which
// files changed since the last load.
//
// With resume (the daemon's first load), a site whose fingerprint is the one last applied in
// full, and that plans no change, makes no new generation.
func (c *converger) load(ctx context.Context, ch watch.Change, resume bool) {
	c.between.Lock()
	defer c.between.Unlock()
	defer c.loadDone()
	reason, fingerprint := ch.Reason, ch.Fingerprint
	if ch.All {
		c.loader.Forget()
	} else {
		c.loader.Changed(ch.Files...)
	}
	var g state.Generation
	if err := c.st.View(ctx, func(tx state.Tx) (err error) { g, err = tx.Generation(); return err }); err != nil {
		c.log.Error("reading the state", "err", err)
		return
	}
	gen := g.Attempted + 1
	log := c.log.With("site_generation", gen)
	start := time.Now()
	s, err := c.loader.Load()
	loaded := time.Now()
	c.mu.Lock()
	c.cur.LoadedAt = time.Now()
	c.mu.Unlock()
	if err != nil {
		c.reject(ctx, log, gen, fingerprint, err)
		return
	}
	if resume && g.Applied > 0 && g.Attempted == g.Applied && g.AppliedFingerprint == fingerprint {
		// The daemon starts (after a restart, a reboot, a power cut) on the site it last
		// applied in full: nothing is re-done and no generation is made, unless the state
		// somehow differs from what the site asks.
		if p, err := c.applier.Plan(ctx, s); err == nil && p.Empty() {
			c.publish(s)
			c.log.Info("site unchanged since generation "+strconv.FormatInt(g.Applied, 10)+"; nothing to apply",
				"hosts", len(s.Hosts), "load", loaded.Sub(start).Round(time.Millisecond))
			c.notify("STATUS=" + c.status(ctx))
			return
		}
	}
	p, err := c.applier.Apply(ctx, s, gen, fingerprint)
	if err != nil {
		c.reject(ctx, log, gen, fingerprint, err)
		return
	}
	c.publish(s)
	log.Info("site applied", "reason", reason, "changes", len(p.Items), "hosts", len(s.Hosts),
		"load", loaded.Sub(start).Round(time.Millisecond), "apply", time.Since(loaded).Round(time.Millisecond))
	for _, it := range p.Items {
		log.Info("host "+string(it.Action), "host", it.Host, "destructive", it.Destructive)
	}
	c.notify("STATUS=" + c.status(ctx))
}

// publish makes s the current site, and tells those who follow it.
func (c *converger) publish(s *site.Site) {
	c.mu.Lock()
	c.cur.Site, c.cur.LoadError = s, ""
	c.mu.Unlock()
	for _, f := range c.applied {
		f(s)
	}
}

// reject records and publishes why generation gen was not applied.
func (c *converger) reject(ctx context.Context, log *slog.Logger, gen int64, fingerprint string, err error) {
	msg := err.Error()
	var problems site.Errors
	if errors.As(err, &problems) {
		msg = problems.Error()
	}
	if !errors.Is(err, reconcile.ErrRefused) { // Apply has recorded a refusal already
		if aerr := reconcile.Attempt(ctx, c.st, gen, fingerprint, errors.New(msg)); aerr != nil {
			log.Error("recording the failed site load", "err", aerr)
		}
	}
	c.mu.Lock()
	c.cur.LoadError = msg
	c.mu.Unlock()
	first, _, _ := strings.Cut(msg, "\n")
	log.Error("site not applied; the last good site stays", "err", first, "problems", strings.Count(msg, "\n")+1)
	c.notify("STATUS=" + c.status(ctx))
}

// status is the STATUS= line systemctl status shows: generation, hosts by phase, last error.
func (c *converger) status(ctx context.Context) string {
	var g state.Generation
	counts := map[state.Phase]int{}
	_ = c.st.View(ctx, func(tx state.Tx) error {
		g, _ = tx.Generation()
		hosts, err := tx.Hosts()
		for _, h := range hosts {
			counts[h.Phase]++
		}
		return err
	})
	cur := c.Current()
	var b strings.Builder
	if c.ephemeral != "" {
		b.WriteString(c.ephemeral + "; ")
	}
	if cur.Site != nil {
		fmt.Fprintf(&b, "site %s generation %d", cur.Site.Settings.Name, g.Applied)
	} else {
		b.WriteString("no site applied yet")
	}
	var parts []string
	total := 0
	for _, p := range state.Phases {
		if n := counts[p]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, p))
			total += n
		}
	}
	fmt.Fprintf(&b, "; %d hosts", total)
	if len(parts) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(parts, ", "))
	}
	if cur.LoadError != "" {
		first, _, _ := strings.Cut(cur.LoadError, "\n")
		fmt.Fprintf(&b, "; last edit rejected: %s", first)
	}
	p := c.problemText()
	c.mu.Lock()
	c.lastProblems = p
	c.mu.Unlock()
	b.WriteString(p)
	if c.serving != "" {
		b.WriteString("; " + c.serving)
	}
	return b.String()
}

// problemText is what status says of the services that do not serve: "; why" for each.
func (c *converger) problemText() string {
	var b strings.Builder
	for _, p := range c.problems {
		if msg := p(); msg != "" {
			b.WriteString("; " + msg)
		}
	}
	return b.String()
}

// start loads (and applies) the site once, whatever it holds: call it before Run, and before
// the daemon says it is ready. Changes made from then on are reported by the watcher.
func (c *converger) start(ctx context.Context) {
	c.beat.Store(time.Now().UnixNano())
	c.load(ctx, watch.Change{Reason: "start", Fingerprint: c.watch.Fingerprint(), All: true}, true)
}

// Run implements service: it loads the site again whenever the watcher reports a change or a
// reload is asked for, until ctx ends.
func (c *converger) Run(ctx context.Context) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		c.beat.Store(time.Now().UnixNano())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			// A PXE service that starts or stops serving changes what systemctl status says.
			c.mu.Lock()
			last := c.lastProblems
			c.mu.Unlock()
			if c.problemText() != last {
				c.notify("STATUS=" + c.status(ctx))
			}
		case <-c.reload:
			c.notify("RELOADING=1\nMONOTONIC_USEC=" + monotonicUsec())
			c.watch.Trigger("systemctl reload")
		case ch := <-c.watch.C:
			c.load(ctx, ch, false)
			if ch.All {
				c.notify("READY=1") // the end of a reload: systemctl reload returns
			}
		}
	}
}
