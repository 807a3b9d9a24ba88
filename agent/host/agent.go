package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/distribution/reference"

	"github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/agent/quadlet"
)

// Agent applies a host's Desired containers and reports their status. One Agent owns the
// host's cairn units: Run takes a lock file so that no second agent runs beside it.
type Agent struct {
	cfg Config

	// applyMu makes applies and recoveries, and so daemon-reloads, one at a time: two
	// generator runs at once can corrupt unit files.
	applyMu sync.Mutex

	mu       sync.Mutex // guards what follows
	st       state
	cur      *quadlet.Rendered // st.current rendered (empty when none)
	prev     *quadlet.Rendered // st.previous rendered (empty when none)
	applying int64             // the generation being applied, 0 when none
}

// New reads the agent's state from cfg.Paths.StateDir: what it applied last survives the
// agent and the host restarting.
func New(cfg Config) (*Agent, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	st, err := loadState(cfg.Paths.StateDir)
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, st: st}
	if a.cur, err = a.render(st.current); err != nil {
		return nil, fmt.Errorf("rendering the applied generation %d again: %w", st.current.Generation, err)
	}
	if a.prev, err = a.render(st.previous); err != nil {
		return nil, fmt.Errorf("rendering the previous generation %d again: %w", st.previous.Generation, err)
	}
	return a, nil
}

func (a *Agent) render(d *api.Desired) (*quadlet.Rendered, error) {
	if d == nil {
		return &quadlet.Rendered{}, nil
	}
	return quadlet.Render(d, a.cfg.Paths.Layout())
}

// Applied is the Desired applied and committed last, nil for none.
func (a *Agent) Applied() *api.Desired {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.st.current
}

// LastAttempt is the outcome of the last generation tried.
func (a *Agent) LastAttempt() Attempt {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.st.attempt
}

// ApplyError is a generation that did not apply. When it failed after the host changed, the
// agent rolled back to the generation before, and Err says so.
type ApplyError struct {
	Generation int64
	Step       string // render, validate, registries, pull, configs, stage, stop, swap, reload, start
	Container  string // the (first) container it failed for, when one
	Err        error
	// Retryable says nothing on the host changed, and that the failure may pass (a pull):
	// trying the generation again disturbs nothing.
	Retryable bool
}

func (e *ApplyError) Error() string { return e.Err.Error() }
func (e *ApplyError) Unwrap() error { return e.Err }

// Apply brings the host to d, and returns the host's status after it. The same Desired as
// the one applied is nothing to do. Otherwise, in order: check d, render its units, validate
// them with the host's quadlet, write registries.conf, pull every image by digest, write the
// config files; then stage the unit directory, stop the units d removes, swap the unit
// directory, reload systemd once, restart the units that changed and wait for each job's
// result and each container's health; then commit. A failure up to the pulls leaves the host
// as it was; a later one rolls back to the generation applied before. The error, an
// *ApplyError, says why; the status says so too (State HostFailed, Reason).
func (a *Agent) Apply(ctx context.Context, d *api.Desired) (api.HostStatus, error) {
	if d != nil && d.Logs != nil {
		// Log requests ride along with the Desired, but are no part of it.
		dd := *d
		dd.Logs = nil
		d = &dd
	}
	a.applyMu.Lock()
	defer a.applyMu.Unlock()
	a.mu.Lock()
	cur, last := a.st.current, a.st.attempt
	a.mu.Unlock()
	if d != nil && cur != nil && sameDesired(cur, d) {
		if last.Failed || last.Generation != d.Generation {
			// The appliance is back at the generation that runs.
			a.recordAttempt(Attempt{Generation: d.Generation, Time: a.cfg.Now()})
		}
		st, _ := a.Status(ctx)
		return st, nil
	}
	var gen int64
	if d != nil {
		gen = d.Generation
	}
	a.mu.Lock()
	a.applying = gen
	a.mu.Unlock()
	start := a.cfg.Now()
	a.cfg.Log.Info("applying", "generation", gen)
	err := a.apply(ctx, d)
	at := Attempt{Generation: gen, Time: a.cfg.Now()}
	if err != nil {
		var ae *ApplyError
		if !errors.As(err, &ae) {
			ae = &ApplyError{Generation: gen, Err: err}
			err = ae
		}
		at.Failed, at.Reason, at.Retryable = true, ae.Error(), ae.Retryable
		a.cfg.Log.Error("the generation did not apply", "generation", gen, "step", ae.Step, "reason", ae.Error())
	} else {
		a.cfg.Log.Info("applied", "generation", gen, "took", a.cfg.Now().Sub(start).Round(time.Millisecond))
	}
	a.recordAttempt(at)
	a.mu.Lock()
	a.applying = 0
	a.mu.Unlock()
	st, _ := a.Status(ctx)
	return st, err
}

func (a *Agent) recordAttempt(at Attempt) {
	a.mu.Lock()
	a.st.attempt = at
	a.mu.Unlock()
	if err := writeJSON(a.cfg.Paths.StateDir, attemptFile, at); err != nil {
		a.cfg.Log.Error("saving the attempt's outcome", "err", err)
	}
}

// sameDesired says a and b are the same Desired (a generation number alone could repeat
// after the appliance's state was restored).
func sameDesired(a, b *api.Desired) bool { return sameJSON(a, b) }

func sameJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

func (a *Agent) apply(ctx context.Context, d *api.Desired) error {
	p := a.cfg.Paths
	if d == nil {
		return &ApplyError{Step: "render", Err: errors.New("no desired state")}
	}
	gen := d.Generation
	// Render checks every field it writes into a unit (names, digests, files against their
	// hashes ...) and refuses what a unit cannot carry safely.
	r, err := a.render(d)
	if err != nil {
		return &ApplyError{Generation: gen, Step: "render", Err: fmt.Errorf("rendering the units: %w", err)}
	}
	// No units (the site took every container off this host) is nothing to validate.
	if err := a.validate(ctx, r.Units); err != nil {
		return &ApplyError{Generation: gen, Step: "validate", Err: fmt.Errorf("the host's quadlet refuses the units: %w", err)}
	}

	// Pulls go through registries.conf: it comes first, and goes back as it was when a
	// pull fails.
	oldReg, err := os.ReadFile(p.RegistriesConf)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return &ApplyError{Generation: gen, Step: "registries", Err: err, Retryable: true}
	}
	regChanged, err := writeOrRemove(p.RegistriesConf, r.RegistriesConf)
	if err != nil {
		return &ApplyError{Generation: gen, Step: "registries", Err: fmt.Errorf("writing %s: %w", p.RegistriesConf, err), Retryable: true}
	}
	restoreReg := func() {
		if !regChanged {
			return
		}
		if _, err := writeOrRemove(p.RegistriesConf, oldReg); err != nil {
			a.cfg.Log.Error("restoring registries.conf", "path", p.RegistriesConf, "err", err)
		}
	}
	pulled := map[string]bool{}
	for _, c := range d.Containers {
		ref, err := pullRef(c)
		if err != nil {
			restoreReg()
			return &ApplyError{Generation: gen, Step: "pull", Container: c.Name, Err: err}
		}
		if pulled[ref] {
			continue
		}
		pulled[ref] = true
		a.cfg.Log.Info("pulling", "container", c.Name, "image", ref)
		if err := a.cfg.Podman.Pull(ctx, ref); err != nil {
			restoreReg()
			return &ApplyError{Generation: gen, Step: "pull", Container: c.Name, Retryable: true,
				Err: fmt.Errorf("%s: pull of %s failed: %w", c.Name, ref, err)}
		}
	}
	// Config files sit in content-addressed directories: new ones disturb nothing running.
	if err := writeConfigs(p.ConfigDir, r.Configs); err != nil {
		restoreReg()
		return &ApplyError{Generation: gen, Step: "configs", Err: err}
	}

	onDisk, err := readUnits(p.UnitDir)
	if err != nil {
		restoreReg()
		return &ApplyError{Generation: gen, Step: "stage", Err: err}
	}
	removed, changed := diffUnits(onDisk, r.Units)
	if len(removed) == 0 && len(changed) == 0 {
		return a.commit(ctx, d, r)
	}
	if err := os.RemoveAll(p.StagingDir); err != nil {
		restoreReg()
		return &ApplyError{Generation: gen, Step: "stage", Err: err}
	}
	staged := filepath.Join(p.StagingDir, fmt.Sprintf("gen-%d", gen))
	if err := stage(staged, r.Units); err != nil {
		restoreReg()
		return &ApplyError{Generation: gen, Step: "stage", Err: fmt.Errorf("staging the units: %w", err)}
	}
	touched := append(slices.Clone(removed), changed...)
	sort.Strings(touched)
	if err := writeJSON(p.StateDir, pendingFile, pending{Desired: d, Touched: touched}); err != nil {
		restoreReg()
		return &ApplyError{Generation: gen, Step: "stage", Err: fmt.Errorf("saving the agent's state: %w", err)}
	}

	// From here on the host changes: a failure rolls back.
	fail := func(ae *ApplyError) error {
		ae.Generation = gen
		if ctx.Err() != nil {
			// The agent is stopping (the host shuts down, say): the pending mark stays, and
			// the agent rolls back when it starts again.
			ae.Err = fmt.Errorf("%w; interrupted: the agent rolls back when it starts again", ae.Err)
			return ae
		}
		a.cfg.Log.Warn("rolling back", "generation", gen, "reason", ae.Err)
		to := "to no generation: none ran before"
		if cur := a.Applied(); cur != nil {
			to = fmt.Sprintf("to generation %d", cur.Generation)
		}
		if rerr := a.rollback(ctx, touched); rerr != nil {
			ae.Err = fmt.Errorf("%w; rolling back %s failed too: %w", ae.Err, to, rerr)
		} else {
			ae.Err = fmt.Errorf("%w; rolled back %s", ae.Err, to)
		}
		return ae
	}
	for _, name := range removed {
		svc := a.serviceFor(name)
		a.cfg.Log.Info("stopping a removed unit", "unit", svc)
		if err := a.job(ctx, "stop", svc, a.cfg.Systemd.Stop); err != nil {
			return fail(&ApplyError{Step: "stop", Err: err})
		}
	}
	if err := swap(staged, p.UnitDir); err != nil {
		return fail(&ApplyError{Step: "swap", Err: fmt.Errorf("swapping the unit directory: %w", err)})
	}
	if err := a.cfg.Systemd.Reload(ctx); err != nil {
		return fail(&ApplyError{Step: "reload", Err: fmt.Errorf("reloading systemd: %w", err)})
	}
	if err := a.restart(ctx, d, r, changed, true); err != nil {
		var ae *ApplyError
		if !errors.As(err, &ae) {
			ae = &ApplyError{Step: "start", Err: err}
		}
		return fail(ae)
	}
	return a.commit(ctx, d, r)
}

func (a *Agent) validate(ctx context.Context, units []quadlet.Unit) error {
	if len(units) == 0 {
		return nil
	}
	return a.cfg.Validate(ctx, units)
}

// commit records d as applied (the one before it as previous) and then tidies up: config
// directories of neither, owned containers d does not name, staging leftovers.
func (a *Agent) commit(ctx context.Context, d *api.Desired, r *quadlet.Rendered) error {
	p := a.cfg.Paths
	a.mu.Lock()
	prev, prevR := a.st.current, a.cur
	a.mu.Unlock()
	if prev != nil {
		if err := writeJSON(p.StateDir, previousFile, prev); err != nil {
			return &ApplyError{Generation: d.Generation, Step: "commit", Err: fmt.Errorf("saving the agent's state: %w", err)}
		}
	}
	if err := writeJSON(p.StateDir, currentFile, d); err != nil {
		return &ApplyError{Generation: d.Generation, Step: "commit", Err: fmt.Errorf("saving the agent's state: %w", err)}
	}
	if err := removeJSON(p.StateDir, pendingFile); err != nil {
		a.cfg.Log.Error("removing the pending mark", "err", err)
	}
	a.mu.Lock()
	if prev != nil {
		a.st.previous, a.prev = prev, prevR
	}
	a.st.current, a.cur = d, r
	a.st.pending = nil
	keep := a.prev.Configs
	a.mu.Unlock()

	if err := pruneConfigs(p.ConfigDir, r.Configs, keep); err != nil {
		a.cfg.Log.Warn("pruning old config files", "err", err)
	}
	if err := os.RemoveAll(p.StagingDir); err != nil {
		a.cfg.Log.Warn("removing the staging directory", "err", err)
	}
	a.prune(ctx, r)
	return nil
}

// prune removes the containers that carry cairn's owner label and that r does not name
// (their units are gone: quadlet's containers are removed when they stop, so this removes
// what was left over). A container without the label is never touched.
func (a *Agent) prune(ctx context.Context, r *quadlet.Rendered) {
	infos, err := a.cfg.Podman.List(ctx)
	if err != nil {
		a.cfg.Log.Warn("listing containers to prune", "err", err)
		return
	}
	want := map[string]bool{}
	for _, u := range r.Units {
		if u.Container != "" {
			want[u.Container] = true
		}
	}
	for _, c := range infos {
		if !c.Owned() || want[c.Name] {
			continue
		}
		a.cfg.Log.Info("removing a container no generation names", "container", c.Name, "id", c.ID)
		if err := a.cfg.Podman.Remove(ctx, c.ID); err != nil {
			a.cfg.Log.Warn("removing a container", "container", c.Name, "err", err)
		}
	}
}

// rollback brings the units back to the applied generation (none when there is none): it
// stops the units the attempt added, swaps the applied generation's units back, restores
// registries.conf, reloads once if the units changed, and restarts the units the attempt
// touched that the applied generation has. It goes on past failures and returns them all.
func (a *Agent) rollback(ctx context.Context, touched []string) error {
	p := a.cfg.Paths
	a.mu.Lock()
	target, r := a.st.current, a.cur
	a.mu.Unlock()
	var gen int64
	if target != nil {
		gen = target.Generation
	}
	var errs []error
	onDisk, err := readUnits(p.UnitDir)
	if err != nil {
		return err
	}
	removed, changed := diffUnits(onDisk, r.Units)
	for _, name := range removed {
		if err := a.job(ctx, "stop", a.serviceFor(name), a.cfg.Systemd.Stop); err != nil {
			errs = append(errs, err)
		}
	}
	if err := writeConfigs(p.ConfigDir, r.Configs); err != nil {
		errs = append(errs, err)
	}
	reload := len(removed) > 0 || len(changed) > 0
	if reload {
		staged := filepath.Join(p.StagingDir, fmt.Sprintf("rollback-%d", gen))
		if err := stage(staged, r.Units); err != nil {
			return errors.Join(append(errs, fmt.Errorf("staging the units: %w", err))...)
		}
		if err := swap(staged, p.UnitDir); err != nil {
			return errors.Join(append(errs, fmt.Errorf("swapping the unit directory: %w", err))...)
		}
	}
	if _, err := writeOrRemove(p.RegistriesConf, r.RegistriesConf); err != nil {
		errs = append(errs, fmt.Errorf("restoring %s: %w", p.RegistriesConf, err))
	}
	if reload {
		if err := a.cfg.Systemd.Reload(ctx); err != nil {
			return errors.Join(append(errs, fmt.Errorf("reloading systemd: %w", err))...)
		}
	}
	restart := slices.Clone(changed)
	for _, u := range r.Units {
		if slices.Contains(touched, u.Name) && !slices.Contains(restart, u.Name) {
			restart = append(restart, u.Name)
		}
	}
	sort.Strings(restart)
	if err := a.restart(ctx, target, r, restart, false); err != nil {
		errs = append(errs, err)
	}
	_ = os.RemoveAll(p.StagingDir)
	if len(errs) > 0 {
		// The pending mark stays: the next start of the agent tries again.
		return errors.Join(errs...)
	}
	return removeJSON(p.StateDir, pendingFile)
}

// Recover finishes what a killed agent left half-done: when a generation was being applied
// (its pending mark is there), it rolls back to the applied one. Run calls it first.
func (a *Agent) Recover(ctx context.Context) error {
	a.applyMu.Lock()
	defer a.applyMu.Unlock()
	a.mu.Lock()
	pd := a.st.pending
	a.mu.Unlock()
	if pd == nil {
		return nil
	}
	var gen int64
	if pd.Desired != nil {
		gen = pd.Desired.Generation
	}
	a.cfg.Log.Warn("the agent stopped while applying a generation: rolling back", "generation", gen)
	err := a.rollback(ctx, pd.Touched)
	if err == nil {
		a.mu.Lock()
		a.st.pending = nil
		a.mu.Unlock()
	}
	reason := fmt.Sprintf("the agent stopped while applying generation %d; rolled back", gen)
	if err != nil {
		reason += "; the rollback failed: " + err.Error()
	}
	a.recordAttempt(Attempt{Generation: gen, Failed: true, Reason: reason, Retryable: true, Time: a.cfg.Now()})
	return err
}

// serviceFor is the service of a unit file the applied generation has, or would have.
func (a *Agent) serviceFor(unit string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range []*quadlet.Rendered{a.cur, a.prev} {
		for _, u := range r.Units {
			if u.Name == unit && u.Service != "" {
				return u.Service
			}
		}
	}
	return serviceOf(unit)
}

// job runs one systemd job bounded by WaitTimeout and turns a result other than done into an
// error.
func (a *Agent) job(ctx context.Context, op, unit string, f func(context.Context, string) (string, error)) error {
	jctx, cancel := context.WithTimeout(ctx, a.cfg.WaitTimeout)
	defer cancel()
	res, err := f(jctx, unit)
	switch {
	case err != nil && jctx.Err() != nil && ctx.Err() == nil:
		return fmt.Errorf("unit %s: no %s job result within %s", unit, op, a.cfg.WaitTimeout)
	case err != nil:
		return fmt.Errorf("unit %s: %s: %w", unit, op, err)
	case res != JobDone:
		return &JobError{Unit: unit, Op: op, Result: res}
	}
	return nil
}

// restart restarts the services of the named units at once and waits for each job's result
// and, when health is set, for each container to run (and be healthy, with a health check).
func (a *Agent) restart(ctx context.Context, d *api.Desired, r *quadlet.Rendered, names []string, health bool) error {
	type result struct {
		container string
		err       error
	}
	results := make([]result, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		u, ok := unitNamed(r, name)
		if !ok {
			continue
		}
		c := containerOf(d, u)
		svc := u.Service
		if svc == "" {
			svc = serviceOf(u.Name)
		}
		results[i].container = u.Container
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i].err = a.start(ctx, svc, u, c, health)
		}()
	}
	wg.Wait()
	var msgs []string
	first := ""
	for _, res := range results {
		if res.err == nil {
			continue
		}
		if first == "" {
			first = res.container
		}
		if res.container != "" {
			msgs = append(msgs, res.container+": "+res.err.Error())
		} else {
			msgs = append(msgs, res.err.Error())
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return &ApplyError{Step: "start", Container: first, Err: errors.New(strings.Join(msgs, "; "))}
}

func (a *Agent) start(ctx context.Context, svc string, u quadlet.Unit, c *api.Container, health bool) error {
	bound := a.cfg.WaitTimeout
	if c != nil && c.Health != nil {
		bound = max(bound, healthTime(c.Health))
	}
	deadline := a.cfg.Now().Add(bound)
	a.cfg.Log.Info("restarting", "unit", svc)
	jctx, cancel := context.WithTimeout(ctx, bound)
	res, err := a.cfg.Systemd.Restart(jctx, svc)
	cancel()
	var jerr error
	switch {
	case err != nil && jctx.Err() != nil && ctx.Err() == nil:
		jerr = fmt.Errorf("unit %s: no job result within %s", svc, bound)
	case err != nil:
		jerr = fmt.Errorf("unit %s: restarting: %w", svc, err)
	case res != JobDone:
		jerr = fmt.Errorf("unit %s: job result %s", svc, res)
	}
	if jerr != nil {
		// With Notify=healthy the job waits for the health check: say what it saw.
		if info, ok := a.find(ctx, u.Container); ok && info.Health != "" {
			jerr = fmt.Errorf("%w (health check %s)", jerr, info.Health)
		}
		return jerr
	}
	if !health || c == nil || c.Restart == "no" {
		return nil
	}
	return a.waitRunning(ctx, u.Container, c.Health != nil, bound, deadline)
}

// waitRunning waits until the container runs, and is healthy when it has a health check; an
// unhealthy verdict fails at once.
func (a *Agent) waitRunning(ctx context.Context, name string, check bool, bound time.Duration, deadline time.Time) error {
	var last string
	for {
		info, ok := a.find(ctx, name)
		switch {
		case !ok:
			last = "container missing"
		case check && info.Health == "unhealthy":
			return fmt.Errorf("health check unhealthy within %s", bound)
		case info.State != "running":
			last = "container " + info.State
		case check && info.Health != "healthy":
			last = "health check " + info.Health
			if info.Health == "" {
				last = "no health status"
			}
		default:
			return nil
		}
		if !a.cfg.Now().Before(deadline) {
			return fmt.Errorf("%s, not running and healthy within %s", last, bound)
		}
		if err := a.cfg.Sleep(ctx, a.cfg.PollInterval); err != nil {
			return fmt.Errorf("%s when the wait ended: %w", last, err)
		}
	}
}

// find is the owned container named name.
func (a *Agent) find(ctx context.Context, name string) (ContainerInfo, bool) {
	infos, err := a.cfg.Podman.List(ctx)
	if err != nil {
		return ContainerInfo{}, false
	}
	for _, c := range infos {
		if c.Name == name && c.Owned() {
			return c, true
		}
	}
	return ContainerInfo{}, false
}

func unitNamed(r *quadlet.Rendered, name string) (quadlet.Unit, bool) {
	for _, u := range r.Units {
		if u.Name == name {
			return u, true
		}
	}
	return quadlet.Unit{}, false
}

// containerOf is the container of d that unit u runs, nil for none.
func containerOf(d *api.Desired, u quadlet.Unit) *api.Container {
	if d == nil || u.Container == "" {
		return nil
	}
	for i := range d.Containers {
		if c := &d.Containers[i]; c.Name == u.Container {
			return c
		}
	}
	return nil
}

// pullRef is the name@digest the host pulls for c, as its unit names the image: the
// image's full name (docker.io/library/nginx) without its tag, at the digest.
func pullRef(c api.Container) (string, error) {
	ref, err := reference.ParseNormalizedNamed(c.Image)
	if err != nil {
		return "", fmt.Errorf("%s: image %q: %w", c.Name, c.Image, err)
	}
	return ref.Name() + "@" + c.Digest, nil
}

// healthTime is how long a health check takes at most to give its verdict: its start period,
// then retries+1 runs each an interval and a timeout apart (podman's defaults for what is
// unset: 30 s, 30 s, 3 retries).
func healthTime(h *api.Health) time.Duration {
	d := func(s string, def time.Duration) time.Duration {
		if v, err := time.ParseDuration(s); err == nil && v > 0 {
			return v
		}
		return def
	}
	retries := h.Retries
	if retries <= 0 {
		retries = 3
	}
	return d(h.StartPeriod, 0) + time.Duration(retries+1)*(d(h.Interval, 30*time.Second)+d(h.Timeout, 30*time.Second))
}
