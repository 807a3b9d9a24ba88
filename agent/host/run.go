package host

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cairn-appliance/cairn/agent/api"
)

// RunConfig configures Run. Agent and Source are required; the rest has defaults.
type RunConfig struct {
	Agent *Agent
	// Source reads the host agent's file (api.HostAgent): the appliance's URL, the host's
	// name and its token. Run reads it again after a 401: a re-adoption replaces the token.
	Source func() (api.HostAgent, error)
	HTTP   *http.Client
	// Wait is how long the appliance may hold a long poll (default 60 s, at most api.MaxWait).
	Wait time.Duration
	// ReportEvery is the longest between two status reports (default 30 s); CheckEvery how
	// often the containers are looked at for a change worth reporting at once (default 10 s).
	ReportEvery, CheckEvery time.Duration
	// MinBackoff and MaxBackoff bound the wait between calls while the appliance is out of
	// reach, doubled after each failure (defaults 1 s and 60 s), with jitter.
	MinBackoff, MaxBackoff time.Duration
	// UnauthorizedDelay is the wait after a 401 before the token is tried again (default 60 s).
	UnauthorizedDelay time.Duration
	// RetryFailed is the least time before a generation that failed without changing the host
	// (a pull) is tried again (default 60 s). A generation rolled back is not tried again until
	// the appliance sends another, or the agent restarts.
	RetryFailed time.Duration
	// Sleep waits between calls; Tick waits between looks at the containers. Both return ctx's
	// error when it ends first.
	Sleep, Tick func(ctx context.Context, d time.Duration) error
	// Jitter spreads a backoff d; default: uniformly between d/2 and d.
	Jitter func(d time.Duration) time.Duration
	Now    func() time.Time
	Log    *slog.Logger
}

func (rc *RunConfig) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&rc.Wait, 60*time.Second)
	rc.Wait = min(rc.Wait, api.MaxWait)
	def(&rc.ReportEvery, 30*time.Second)
	def(&rc.CheckEvery, 10*time.Second)
	def(&rc.MinBackoff, time.Second)
	def(&rc.MaxBackoff, 60*time.Second)
	def(&rc.UnauthorizedDelay, 60*time.Second)
	def(&rc.RetryFailed, 60*time.Second)
	if rc.HTTP == nil {
		rc.HTTP = &http.Client{}
	}
	if rc.Sleep == nil {
		rc.Sleep = sleep
	}
	if rc.Tick == nil {
		rc.Tick = sleep
	}
	if rc.Jitter == nil {
		// Jitter only spreads hosts' retries: no secret hangs on it.
		rc.Jitter = func(d time.Duration) time.Duration { return d/2 + rand.N(d/2+1) } //nolint:gosec // G404
	}
	if rc.Now == nil {
		rc.Now = time.Now
	}
	if rc.Log == nil {
		rc.Log = slog.New(slog.DiscardHandler)
	}
}

// Run is the host agent's service: it rolls back what a killed agent left half-applied,
// reads the agent's file, then long-polls the host's Desired and applies each new generation,
// and reports the host's status after every apply, whenever a container changes, and every
// ReportEvery. While the appliance is out of reach it waits, longer each time, and changes
// nothing on the host: the applied generation keeps running. It returns when ctx ends.
func Run(ctx context.Context, rc RunConfig) error {
	rc.setDefaults()
	r := &runner{rc: rc, a: rc.Agent}
	if err := r.a.Recover(ctx); err != nil {
		rc.Log.Error("rolling back what the agent left half-applied", "err", err)
	}
	for {
		ha, err := rc.Source()
		if err == nil {
			r.setClient(ha)
			break
		}
		rc.Log.Error("reading the agent's file", "err", err, "retry_in", rc.MaxBackoff)
		if rc.Sleep(ctx, rc.MaxBackoff) != nil {
			return nil
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { r.report(ctx) })
	r.poll(ctx)
	wg.Wait()
	r.logs.Wait()
	return nil
}

type runner struct {
	rc   RunConfig
	a    *Agent
	logs sync.WaitGroup // log requests being answered

	mu       sync.Mutex // guards what follows
	c        *client
	tried    int64 // the generation this run tried last
	triedAny bool

	sendMu sync.Mutex      // one post at a time, in order; guards what follows
	sent   *api.HostStatus // the last status the appliance took
	sentAt time.Time
}

func (r *runner) setClient(ha api.HostAgent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.c = &client{ha: ha, hc: r.rc.HTTP}
}

func (r *runner) client() *client {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.c
}

// poll long-polls the Desired and applies what is new, until ctx ends.
func (r *runner) poll(ctx context.Context) {
	rc := r.rc
	backoff := rc.MinBackoff
	for ctx.Err() == nil {
		c := r.client()
		t0 := rc.Now()
		d, err := c.desired(ctx, r.generation(), rc.Wait)
		if ctx.Err() != nil {
			return
		}
		switch {
		case isUnauthorized(err):
			rc.Log.Error("the appliance refused the host token (401): reading the agent's file again, as a re-adoption gives the host a new token", "host", c.ha.Host, "err", err, "retry_in", rc.UnauthorizedDelay)
			if ha, err := rc.Source(); err != nil {
				rc.Log.Error("reading the agent's file", "err", err)
			} else {
				r.setClient(ha)
			}
			if rc.Sleep(ctx, rc.UnauthorizedDelay) != nil {
				return
			}
			continue
		case err == nil && d.Host != c.ha.Host:
			rc.Log.Error("the appliance sent the desired state of another host", "want", c.ha.Host, "got", d.Host)
			err = errWrongHost
		}
		if err != nil {
			wait := rc.Jitter(backoff)
			rc.Log.Warn("no desired state from the appliance; the containers keep running as they are", "err", err, "retry_in", wait.Round(time.Millisecond))
			if rc.Sleep(ctx, wait) != nil {
				return
			}
			backoff = min(2*backoff, rc.MaxBackoff)
			continue
		}
		backoff = rc.MinBackoff
		for _, lr := range d.Logs {
			r.logs.Go(func() { r.serveLogs(ctx, c, lr) })
		}
		d.Logs = nil
		if !r.shouldApply(d) {
			if rc.Now().Sub(t0) < rc.MinBackoff && rc.Sleep(ctx, rc.MinBackoff) != nil {
				return // an appliance that answers at once each time gets no busy loop
			}
			continue
		}
		r.mu.Lock()
		r.tried, r.triedAny = d.Generation, true
		r.mu.Unlock()
		st, _ := r.a.Apply(ctx, d)
		r.send(ctx, st, true)
	}
}

var errWrongHost = &StatusError{Code: http.StatusConflict, Message: "the desired state names another host"}

// generation is the one the appliance is told the host has: the last this run tried (so
// that a generation that failed is not sent again at once), else the applied one.
func (r *runner) generation() int64 {
	r.mu.Lock()
	tried, ok := r.tried, r.triedAny
	r.mu.Unlock()
	if ok {
		return tried
	}
	if cur := r.a.Applied(); cur != nil {
		return cur.Generation
	}
	return 0
}

// shouldApply says whether d is worth an Apply: it differs from what runs, and it is not a
// generation that failed, unless that failure changed nothing and is RetryFailed old, or it
// failed before this run (the agent restarted: it tries once more).
func (r *runner) shouldApply(d *api.Desired) bool {
	at := r.a.LastAttempt()
	if cur := r.a.Applied(); cur != nil && sameDesired(cur, d) {
		return at.Failed // back at the generation that runs: clear the failure
	}
	if !at.Failed || at.Generation != d.Generation {
		return true
	}
	r.mu.Lock()
	triedHere := r.triedAny && r.tried == d.Generation
	r.mu.Unlock()
	return !triedHere || at.Retryable && r.rc.Now().Sub(at.Time) >= r.rc.RetryFailed
}

// report looks at the host's status every CheckEvery and sends it when it changed or
// ReportEvery has passed.
func (r *runner) report(ctx context.Context) {
	for {
		st, err := r.a.Status(ctx)
		if err != nil {
			r.rc.Log.Debug("reading the status", "err", err)
		}
		r.send(ctx, st, false)
		if r.rc.Tick(ctx, r.rc.CheckEvery) != nil {
			return
		}
	}
}

// send posts st when force is set, when it differs from the last one the appliance took, or
// when that one is ReportEvery old.
func (r *runner) send(ctx context.Context, st api.HostStatus, force bool) {
	if ctx.Err() != nil {
		return
	}
	r.sendMu.Lock()
	defer r.sendMu.Unlock()
	if !force && r.sent != nil && sameStatus(*r.sent, st) && r.rc.Now().Sub(r.sentAt) < r.rc.ReportEvery {
		return
	}
	if err := r.client().status(ctx, st); err != nil {
		r.rc.Log.Debug("reporting the status", "err", err)
		return
	}
	r.sent, r.sentAt = &st, r.rc.Now()
}

// sameStatus compares two statuses but for their time.
func sameStatus(a, b api.HostStatus) bool {
	a.Time, b.Time = time.Time{}, time.Time{}
	return sameJSON(a, b)
}

// serveLogs answers an operator's log request: it posts the container's output (podman logs)
// to the appliance as it comes, until it ends or the appliance cuts the post. Only a
// container cairn owns is read; for another the answer says so.
func (r *runner) serveLogs(ctx context.Context, c *client, lr api.LogRequest) {
	log := r.rc.Log.With("request", lr.ID, "container", lr.Container)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if _, ok := r.a.find(ctx, lr.Container); !ok {
		msg := fmt.Sprintf("cairn-agent: this host runs no container %q of cairn's\n", lr.Container)
		if err := c.logs(ctx, lr.ID, strings.NewReader(msg)); err != nil {
			log.Debug("answering a log request", "err", err)
		}
		return
	}
	tail := lr.Tail
	if tail <= 0 {
		tail = -1 // all
	}
	log.Info("sending a container's logs to the appliance", "follow", lr.Follow, "tail", lr.Tail)
	pr, pw := io.Pipe()
	go func() {
		err := r.a.cfg.Podman.Logs(ctx, lr.Container, lr.Follow, tail, pw)
		if err != nil && ctx.Err() == nil {
			fmt.Fprintf(pw, "\ncairn-agent: %v\n", err)
		}
		_ = pw.Close()
	}()
	if err := c.logs(ctx, lr.ID, pr); err != nil && ctx.Err() == nil {
		log.Debug("sending logs", "err", err)
	}
	// The appliance took all, or its operator went: stop reading.
	cancel()
	_ = pr.Close()
}
