package host

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/agent/quadlet"
)

func mustApply(t *testing.T, a *Agent, d *api.Desired) api.HostStatus {
	t.Helper()
	st, err := a.Apply(context.Background(), d)
	if err != nil {
		t.Fatalf("Apply(generation %d) = %v", d.Generation, err)
	}
	if st.State != api.HostReady || st.Applied != d.Generation {
		t.Fatalf("Apply(generation %d): state %s, applied %d, reason %q; want ready, %d", d.Generation, st.State, st.Applied, st.Reason, d.Generation)
	}
	return st
}

func TestApplySequence(t *testing.T) {
	e := newEnv(t)
	e.host.health["web"] = "healthy"
	a := e.agent()

	// The first generation: everything is new.
	st := mustApply(t, a, desired(1, ctr("db", 'a'), withHealth(ctr("web", 'b'))))
	equalCalls(t, "generation 1", e.host.take(), []string{
		"validate cairn-db.container cairn-web.container",
		"pull " + ref('a'),
		"pull " + ref('b'),
		"reload [cairn-db.container cairn-web.container] staged=0",
		"restart cairn-db.service",
		"restart cairn-web.service",
	})
	if len(st.Containers) != 2 || st.Containers[1].Name != "web" || st.Containers[1].Health != "healthy" || st.Containers[1].Digest != "sha256:"+strings.Repeat("b", 64) {
		t.Errorf("status containers = %+v", st.Containers)
	}
	reg, err := os.ReadFile(e.paths.RegistriesConf)
	if err != nil || !strings.Contains(string(reg), testRegistry+"/docker.io") {
		t.Errorf("registries.conf = %q, %v; want the appliance's registry", reg, err)
	}

	// db goes, web changes, cache comes: db stops while its unit file is still there, and
	// only web and cache restart, after one reload.
	mustApply(t, a, desired(2, ctr("cache", 'c'), withHealth(ctr("web", 'd'))))
	equalCalls(t, "generation 2", e.host.take(), []string{
		"validate cairn-cache.container cairn-web.container",
		"pull " + ref('c'),
		"pull " + ref('d'),
		"stop cairn-db.service file=true",
		"reload [cairn-cache.container cairn-web.container] staged=0",
		"restart cairn-cache.service",
		"restart cairn-web.service",
	})

	// Only cache's environment changes: only cache restarts.
	c := ctr("cache", 'c')
	c.Env = map[string]string{"MODE": "fast"}
	mustApply(t, a, desired(3, c, withHealth(ctr("web", 'd'))))
	equalCalls(t, "generation 3", e.host.take(), []string{
		"validate cairn-cache.container cairn-web.container",
		"pull " + ref('c'),
		"pull " + ref('d'),
		"reload [cairn-cache.container cairn-web.container] staged=0",
		"restart cairn-cache.service",
	})

	// A new generation number with the same units: pulls (each image once), no reload, no
	// restart.
	mustApply(t, a, desired(4, c, withHealth(ctr("web", 'd'))))
	equalCalls(t, "generation 4", e.host.take(), []string{
		"validate cairn-cache.container cairn-web.container",
		"pull " + ref('c'),
		"pull " + ref('d'),
	})
}

func TestUnchangedGenerationIsNoOp(t *testing.T) {
	e := newEnv(t)
	a := e.agent()
	d := desired(5, ctr("web", 'a'))
	mustApply(t, a, d)
	e.host.take()

	st := mustApply(t, a, desired(5, ctr("web", 'a')))
	equalCalls(t, "the same Desired again", e.host.take(), nil)
	if st.Applied != 5 || st.Attempted != 5 {
		t.Errorf("status applied %d attempted %d, want 5 5", st.Applied, st.Attempted)
	}

	// A new agent (the agent or the host restarted) knows what it applied.
	a2 := e.agent()
	if got := a2.Applied(); got == nil || got.Generation != 5 {
		t.Fatalf("a new agent's Applied() = %+v, want generation 5", got)
	}
	mustApply(t, a2, desired(5, ctr("web", 'a')))
	equalCalls(t, "the same Desired after a restart", e.host.take(), nil)

	// Control: the same generation number with other content is applied (the appliance's
	// state was restored), so the test above would see calls if the agent made any.
	mustApply(t, a2, desired(5, ctr("web", 'b')))
	if calls := e.host.take(); len(calls) == 0 {
		t.Error("a changed Desired under the same generation made no calls")
	}
}

func TestPersistence(t *testing.T) {
	e := newEnv(t)
	a := e.agent()
	mustApply(t, a, desired(1, ctr("web", 'a')))
	mustApply(t, a, desired(2, ctr("web", 'b')))

	a2 := e.agent()
	if got := a2.Applied(); got == nil || got.Generation != 2 {
		t.Fatalf("Applied() = %+v, want generation 2", got)
	}
	st, err := a2.Status(context.Background())
	if err != nil || st.Applied != 2 || st.State != api.HostReady {
		t.Errorf("Status() = applied %d state %s, %v; want 2 ready", st.Applied, st.State, err)
	}
	prev, err := readJSON[api.Desired](filepath.Join(e.paths.StateDir, previousFile))
	if err != nil || prev == nil || prev.Generation != 1 {
		t.Errorf("the previous generation saved = %+v, %v; want 1", prev, err)
	}
	if _, err := os.Stat(filepath.Join(e.paths.StateDir, pendingFile)); !os.IsNotExist(err) {
		t.Errorf("the pending mark is still there after a commit: %v", err)
	}
}

func TestRollbackOnUnhealthy(t *testing.T) {
	e := newEnv(t)
	e.host.health["web"] = "healthy"
	e.host.health["web@sha256:"+strings.Repeat("b", 64)] = "unhealthy"
	a := e.agent()
	mustApply(t, a, desired(1, withHealth(ctr("web", 'a'))))
	old, _ := os.ReadFile(filepath.Join(e.paths.UnitDir, "cairn-web.container"))
	e.host.take()

	st, err := a.Apply(context.Background(), desired(2, withHealth(ctr("web", 'b'))))
	var ae *ApplyError
	if !errors.As(err, &ae) || ae.Container != "web" || ae.Step != "start" || ae.Retryable {
		t.Fatalf("Apply = %v, want an ApplyError for web's start", err)
	}
	equalCalls(t, "the failed generation and its rollback", e.host.take(), []string{
		"validate cairn-web.container",
		"pull " + ref('b'),
		"reload [cairn-web.container] staged=0",
		"restart cairn-web.service",
		// the rollback
		"reload [cairn-web.container] staged=0",
		"restart cairn-web.service",
	})
	if st.State != api.HostFailed || st.Applied != 1 || st.Attempted != 2 {
		t.Errorf("status: state %s applied %d attempted %d; want failed 1 2", st.State, st.Applied, st.Attempted)
	}
	for _, want := range []string{"web: health check unhealthy within", "rolled back to generation 1"} {
		if !strings.Contains(st.Reason, want) {
			t.Errorf("reason %q lacks %q", st.Reason, want)
		}
	}
	if now, _ := os.ReadFile(filepath.Join(e.paths.UnitDir, "cairn-web.container")); string(now) != string(old) {
		t.Errorf("after the rollback the unit is\n%s\nwant generation 1's\n%s", now, old)
	}
	if len(st.Containers) != 1 || st.Containers[0].Digest != "sha256:"+strings.Repeat("a", 64) || st.Containers[0].Health != "healthy" {
		t.Errorf("containers after the rollback = %+v, want web at generation 1's digest, healthy", st.Containers)
	}
	if got := e.agent().Applied(); got.Generation != 1 {
		t.Errorf("saved generation after the rollback = %d, want 1", got.Generation)
	}
	if _, err := os.Stat(filepath.Join(e.paths.StateDir, pendingFile)); !os.IsNotExist(err) {
		t.Errorf("the pending mark is still there after a rollback: %v", err)
	}
}

func TestRollbackOnJobFailure(t *testing.T) {
	e := newEnv(t)
	a := e.agent()
	mustApply(t, a, desired(1, ctr("web", 'a'), ctr("db", 'b')))
	e.host.take()
	e.host.jobResult["cairn-api.service"] = "failed"

	// api is new and fails; db goes. The rollback stops api while its unit is there, and
	// brings db back.
	st, err := a.Apply(context.Background(), desired(2, ctr("api", 'c'), ctr("web", 'a')))
	if err == nil {
		t.Fatal("Apply succeeded, want api's failure")
	}
	equalCalls(t, "the failed generation and its rollback", e.host.take(), []string{
		"validate cairn-api.container cairn-web.container",
		"pull " + ref('c'),
		"pull " + ref('a'),
		"stop cairn-db.service file=true",
		"reload [cairn-api.container cairn-web.container] staged=0",
		"restart cairn-api.service",
		// the rollback
		"stop cairn-api.service file=true",
		"reload [cairn-db.container cairn-web.container] staged=0",
		"restart cairn-db.service",
	})
	if want := "api: unit cairn-api.service: job result failed"; !strings.Contains(st.Reason, want) {
		t.Errorf("reason %q lacks %q", st.Reason, want)
	}
}

func TestFirstGenerationFailsRollsBackToNothing(t *testing.T) {
	e := newEnv(t)
	e.host.jobResult["cairn-web.service"] = "timeout"
	a := e.agent()
	st, err := a.Apply(context.Background(), desired(1, ctr("web", 'a')))
	if err == nil || st.State != api.HostFailed || st.Applied != 0 {
		t.Fatalf("Apply = %v, status %s applied %d; want failed, 0", err, st.State, st.Applied)
	}
	if !strings.Contains(st.Reason, "rolled back to no generation") {
		t.Errorf("reason %q does not say there was nothing to roll back to", st.Reason)
	}
	units, _ := readUnits(e.paths.UnitDir)
	if len(units) != 0 {
		t.Errorf("units left after rolling back to nothing: %v", slices.Collect(maps.Keys(units)))
	}
	if _, err := os.Stat(e.paths.RegistriesConf); !os.IsNotExist(err) {
		t.Errorf("registries.conf left after rolling back to nothing: %v", err)
	}
}

// withoutAttempt drops the agent's record of its last attempt from a snapshot: that file
// changes by design when an attempt fails.
func withoutAttempt(e *testEnv, m map[string]string) map[string]string {
	delete(m, strings.TrimPrefix(filepath.Join(e.paths.StateDir, attemptFile), e.root))
	return m
}

func TestFailedPullChangesNothing(t *testing.T) {
	for _, control := range []bool{false, true} {
		e := newEnv(t)
		a := e.agent()
		mustApply(t, a, desired(1, ctr("web", 'a')))
		e.host.take()
		before := withoutAttempt(e, e.snapshot())

		// A new registry address and a new image: registries.conf is written for the pull,
		// and must go back when the pull fails.
		d := desired(2, ctr("web", 'b'))
		d.Registry = "10.20.0.2:5000"
		if !control {
			e.host.pullErr[ref('b')] = errors.New("manifest unknown")
		}
		st, err := a.Apply(context.Background(), d)
		calls := e.host.take()
		after := withoutAttempt(e, e.snapshot())
		if control {
			// Without the failure the same apply changes files and reloads: the checks
			// below can fail.
			if err != nil || maps.Equal(before, after) || !slices.ContainsFunc(calls, func(c string) bool { return strings.HasPrefix(c, "reload") }) {
				t.Fatalf("control: Apply = %v; files changed %v; calls %v", err, !maps.Equal(before, after), calls)
			}
			continue
		}
		var ae *ApplyError
		if !errors.As(err, &ae) || ae.Step != "pull" || !ae.Retryable {
			t.Fatalf("Apply = %v, want a retryable pull failure", err)
		}
		equalCalls(t, "a failed pull", calls, []string{
			"validate cairn-web.container",
			"pull " + ref('b'),
		})
		if !maps.Equal(before, after) {
			for k := range after {
				if before[k] != after[k] {
					t.Errorf("%s changed", k)
				}
			}
			for k := range before {
				if _, ok := after[k]; !ok {
					t.Errorf("%s went", k)
				}
			}
		}
		want := "web: pull of " + ref('b') + " failed: manifest unknown"
		if st.State != api.HostFailed || !strings.HasPrefix(st.Reason, want) || st.Applied != 1 || st.Attempted != 2 {
			t.Errorf("status %s %q applied %d attempted %d; want failed %q, 1, 2", st.State, st.Reason, st.Applied, st.Attempted, want)
		}
	}
}

func TestFailedValidationChangesNothing(t *testing.T) {
	e := newEnv(t)
	a := e.agent()
	mustApply(t, a, desired(1, ctr("web", 'a')))
	e.host.take()
	before := withoutAttempt(e, e.snapshot())
	e.host.validErr = errors.New(`quadlet: unit cairn-web.container: converting "cairn-web.container": bad`)
	st, err := a.Apply(context.Background(), desired(2, ctr("web", 'b')))
	if err == nil || st.State != api.HostFailed || !strings.Contains(st.Reason, "converting") {
		t.Fatalf("Apply = %v, status %s %q; want failed with quadlet's words", err, st.State, st.Reason)
	}
	equalCalls(t, "a failed validation", e.host.take(), []string{"validate cairn-web.container"})
	if after := withoutAttempt(e, e.snapshot()); !maps.Equal(before, after) {
		t.Error("a failed validation changed files")
	}
}

func TestPrune(t *testing.T) {
	e := newEnv(t)
	e.host.keepOnStop = true // a container that outlives its unit's stop
	a := e.agent()
	mustApply(t, a, desired(1, ctr("web", 'a'), ctr("db", 'b')))
	// Beside cairn's: a container cairn did not create, and one it did that no generation
	// names any more (the control: it is removed, so the label is what spares "manual").
	e.host.containers["manual"] = ContainerInfo{ID: "id-manual", Name: "manual", State: "running", Labels: map[string]string{"app": "mine"}}
	e.host.containers["stray"] = ContainerInfo{ID: "id-stray", Name: "stray", State: "exited", Labels: map[string]string{quadlet.OwnerLabel: quadlet.OwnerValue}}
	e.host.take()

	mustApply(t, a, desired(2, ctr("web", 'a')))
	equalCalls(t, "removing db", e.host.take(), []string{
		"validate cairn-web.container",
		"pull " + ref('a'),
		"stop cairn-db.service file=true",
		"reload [cairn-web.container] staged=0",
		"remove id-db",
		"remove id-stray",
	})
	if _, ok := e.host.containers["manual"]; !ok {
		t.Error("the container cairn did not create is gone")
	}
	if _, err := os.Stat(filepath.Join(e.paths.UnitDir, "cairn-db.container")); !os.IsNotExist(err) {
		t.Errorf("db's unit is still there: %v", err)
	}
}

func TestConfigFilesKeptForTwoGenerations(t *testing.T) {
	e := newEnv(t)
	a := e.agent()
	dirs := func() []string {
		ents, _ := os.ReadDir(e.paths.ConfigDir)
		var n []string
		for _, x := range ents {
			n = append(n, x.Name())
		}
		return n
	}
	var seen [][]string
	for i, content := range []string{"one", "two", "three"} {
		mustApply(t, a, desired(int64(i+1), withFile(ctr("web", 'a'), "/etc/web.conf", content)))
		seen = append(seen, dirs())
	}
	if len(seen[0]) != 1 || len(seen[1]) != 2 || len(seen[2]) != 2 {
		t.Fatalf("config directories after each generation: %v; want 1, then the current and the previous", seen)
	}
	if slices.Contains(seen[2], seen[0][0]) {
		t.Errorf("generation 1's config directory %s is still there after generation 3", seen[0][0])
	}
	unit, _ := os.ReadFile(filepath.Join(e.paths.UnitDir, "cairn-web.container"))
	for _, d := range seen[2] {
		b, err := os.ReadFile(filepath.Join(e.paths.ConfigDir, d, "etc/web.conf"))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) == "three" && !strings.Contains(string(unit), d) {
			t.Errorf("the unit does not mount the current config directory %s", d)
		}
	}
}

func TestRecoverAfterAKill(t *testing.T) {
	e := newEnv(t)
	a := e.agent()
	mustApply(t, a, desired(1, ctr("web", 'a')))
	good, _ := os.ReadFile(filepath.Join(e.paths.UnitDir, "cairn-web.container"))
	e.host.take()

	// The agent was killed after swapping in generation 2 (web changed, api added).
	d2 := desired(2, ctr("api", 'c'), ctr("web", 'b'))
	r2, err := quadlet.Render(d2, e.paths.Layout())
	if err != nil {
		t.Fatal(err)
	}
	if err := stage(filepath.Join(e.paths.StagingDir, "x"), r2.Units); err != nil {
		t.Fatal(err)
	}
	if err := swap(filepath.Join(e.paths.StagingDir, "x"), e.paths.UnitDir); err != nil {
		t.Fatal(err)
	}
	if err := writeJSON(e.paths.StateDir, pendingFile, pending{Desired: d2, Touched: []string{"cairn-api.container", "cairn-web.container"}}); err != nil {
		t.Fatal(err)
	}

	a2 := e.agent()
	if err := a2.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	equalCalls(t, "recovery", e.host.take(), []string{
		"stop cairn-api.service file=true",
		"reload [cairn-web.container] staged=0",
		"restart cairn-web.service",
	})
	if now, _ := os.ReadFile(filepath.Join(e.paths.UnitDir, "cairn-web.container")); string(now) != string(good) {
		t.Error("the unit is not generation 1's after the recovery")
	}
	if at := a2.LastAttempt(); !at.Failed || at.Generation != 2 || !at.Retryable {
		t.Errorf("last attempt = %+v, want generation 2 failed, retryable", at)
	}
	// Recovered once, there is nothing more to do.
	if err := e.agent().Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	equalCalls(t, "a second recovery", e.host.take(), nil)
}

func TestStatus(t *testing.T) {
	e := newEnv(t)
	e.host.health["db"] = "healthy"
	a := e.agent()
	mustApply(t, a, desired(1, ctr("web", 'a'), withHealth(ctr("db", 'b'))))
	e.host.restarts["cairn-web.service"] = 3
	c := e.host.containers["web"]
	c.Restarts = 1
	e.host.containers["web"] = c
	delete(e.host.containers, "db")
	e.host.containers["manual"] = ContainerInfo{ID: "x", Name: "manual", State: "running"}

	st, err := a.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.State != api.HostDeploying || !strings.Contains(st.Reason, "db is missing") {
		t.Errorf("state %s %q; want deploying, db missing", st.State, st.Reason)
	}
	var names []string
	for _, c := range st.Containers {
		names = append(names, c.Name+":"+c.State)
	}
	if want := []string{"db:missing", "web:running"}; !slices.Equal(names, want) {
		t.Errorf("containers %v, want %v (no container cairn did not create)", names, want)
	}
	if st.Containers[1].Restarts != 4 {
		t.Errorf("web's restarts = %d, want podman's 1 + systemd's 3", st.Containers[1].Restarts)
	}
}

func TestInterruptedApplyRollsBackAtTheNextStart(t *testing.T) {
	e := newEnv(t)
	a := e.agent()
	mustApply(t, a, desired(1, ctr("web", 'a')))
	good, _ := os.ReadFile(filepath.Join(e.paths.UnitDir, "cairn-web.container"))
	e.host.take()

	// The agent is stopped (SIGTERM) while it waits for web's restart.
	ctx, cancel := context.WithCancel(context.Background())
	e.host.onRestart = func(string) { cancel() }
	_, err := a.Apply(ctx, desired(2, ctr("web", 'b')))
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("Apply = %v, want interrupted", err)
	}
	equalCalls(t, "the interrupted apply: no rollback on the way out", e.host.take(), []string{
		"validate cairn-web.container",
		"pull " + ref('b'),
		"reload [cairn-web.container] staged=0",
		"restart cairn-web.service",
	})
	e.host.onRestart = nil

	a2 := e.agent()
	if err := a2.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	equalCalls(t, "the next start", e.host.take(), []string{
		"reload [cairn-web.container] staged=0",
		"restart cairn-web.service",
	})
	if now, _ := os.ReadFile(filepath.Join(e.paths.UnitDir, "cairn-web.container")); string(now) != string(good) {
		t.Error("the unit is not generation 1's after the next start")
	}
}

func TestRemoveEverything(t *testing.T) {
	e := newEnv(t)
	a := e.agent()
	mustApply(t, a, desired(1, ctr("web", 'a'), ctr("db", 'b')))
	e.host.take()
	st := mustApply(t, a, desired(2))
	equalCalls(t, "no containers left", e.host.take(), []string{
		"stop cairn-db.service file=true",
		"stop cairn-web.service file=true",
		"reload [] staged=0",
	})
	if len(st.Containers) != 0 {
		t.Errorf("containers %+v, want none", st.Containers)
	}
}

func TestPullsEachImageOnce(t *testing.T) {
	e := newEnv(t)
	mustApply(t, e.agent(), desired(1, ctr("one", 'a'), ctr("two", 'a')))
	var pulls []string
	for _, c := range e.host.take() {
		if strings.HasPrefix(c, "pull") {
			pulls = append(pulls, c)
		}
	}
	equalCalls(t, "two containers of one image", pulls, []string{"pull " + ref('a')})
}
