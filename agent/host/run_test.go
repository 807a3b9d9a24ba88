package host

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/agent/api"
)

// fakeAppliance serves the host agent's calls for host h1.
type fakeAppliance struct {
	t *testing.T

	mu       sync.Mutex
	desired  *api.Desired
	logs     map[string]string // log request ID -> what the agent posted
	logged   chan string       // each log request ID posted, when not nil
	tokens   map[string]bool
	gets     []string // "generation=N wait=W token=T" of each GET
	statuses []api.HostStatus
	onGet    func(n int, r *http.Request) // called before each GET is answered
}

func (f *fakeAppliance) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	ok := f.tokens[token]
	f.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == api.HostPath("h1", api.CallDesired):
		f.mu.Lock()
		f.gets = append(f.gets, "generation="+r.URL.Query().Get("generation")+" wait="+r.URL.Query().Get("wait")+" token="+token)
		n, hook, d := len(f.gets), f.onGet, f.desired
		f.mu.Unlock()
		if hook != nil {
			hook(n, r)
		}
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(api.Error{Error: "unknown host token"})
			return
		}
		json.NewEncoder(w).Encode(d)
	case r.Method == http.MethodPost && r.URL.Path == api.HostPath("h1", api.CallStatus):
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var st api.HostStatus
		if err := json.NewDecoder(r.Body).Decode(&st); err != nil {
			f.t.Errorf("status: %v", err)
		}
		f.mu.Lock()
		f.statuses = append(f.statuses, st)
		f.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, api.HostPath("h1", api.CallLogs)+"/"):
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		if f.logs == nil {
			f.logs = map[string]string{}
		}
		id := strings.TrimPrefix(r.URL.Path, api.HostPath("h1", api.CallLogs)+"/")
		f.logs[id] = string(b)
		logged := f.logged
		f.mu.Unlock()
		if logged != nil {
			logged <- id
		}
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeAppliance) snapshot() ([]string, []api.HostStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.gets), slices.Clone(f.statuses)
}

// idle is a Tick that waits for the end: the reporter sends its first status only.
func idle(ctx context.Context, d time.Duration) error {
	<-ctx.Done()
	return ctx.Err()
}

func runConfig(e *testEnv, a *Agent, source func() (api.HostAgent, error)) RunConfig {
	return RunConfig{
		Agent: a, Source: source,
		Sleep: e.clock.Sleep, Tick: idle, Now: e.clock.Now,
		Jitter: func(d time.Duration) time.Duration { return d },
	}
}

func testContext(t *testing.T) (context.Context, context.CancelFunc) {
	// A guard against a hang, never reached when the test works.
	return context.WithTimeout(context.Background(), 20*time.Second)
}

func TestRunLongPollAndApply(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := testContext(t)
	defer cancel()
	fa := &fakeAppliance{t: t, desired: desired(1, ctr("web", 'a')), tokens: map[string]bool{"tok": true}}
	fa.onGet = func(n int, r *http.Request) {
		if n == 3 {
			cancel()
		}
	}
	srv := httptest.NewServer(fa)
	defer srv.Close()
	ha := api.HostAgent{Server: srv.URL, Host: "h1", Token: "tok"}
	if err := Run(ctx, runConfig(e, e.agent(), func() (api.HostAgent, error) { return ha, nil })); err != nil {
		t.Fatal(err)
	}
	gets, statuses := fa.snapshot()
	if want := []string{"generation=0 wait=60 token=tok", "generation=1 wait=60 token=tok", "generation=1 wait=60 token=tok"}; !slices.Equal(gets, want) {
		t.Errorf("GETs %v, want %v", gets, want)
	}
	// Generation 1 applied once: the same answer again is nothing to do.
	var restarts int
	for _, c := range e.host.take() {
		if strings.HasPrefix(c, "restart") {
			restarts++
		}
	}
	if restarts != 1 {
		t.Errorf("web restarted %d times, want once", restarts)
	}
	if !slices.ContainsFunc(statuses, func(st api.HostStatus) bool {
		return st.Applied == 1 && st.State == api.HostReady && len(st.Containers) == 1 && st.Containers[0].State == "running"
	}) {
		t.Errorf("no status reported generation 1 ready: %+v", statuses)
	}
}

func TestRunUnauthorizedReadsTheTokenAgain(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := testContext(t)
	defer cancel()
	fa := &fakeAppliance{t: t, desired: desired(1, ctr("web", 'a')), tokens: map[string]bool{"new": true}}
	fa.onGet = func(n int, r *http.Request) {
		if n == 3 {
			cancel()
		}
	}
	srv := httptest.NewServer(fa)
	defer srv.Close()
	reads := 0
	source := func() (api.HostAgent, error) {
		reads++
		tok := "new"
		if reads == 1 {
			tok = "old" // re-adopted since: the file has a new token now
		}
		return api.HostAgent{Server: srv.URL, Host: "h1", Token: tok}, nil
	}
	if err := Run(ctx, runConfig(e, e.agent(), source)); err != nil {
		t.Fatal(err)
	}
	gets, statuses := fa.snapshot()
	if len(gets) < 2 || !strings.HasSuffix(gets[0], "token=old") || !strings.HasSuffix(gets[1], "token=new") {
		t.Errorf("GETs %v: want the old token refused, then the new one", gets)
	}
	if !slices.Contains(e.clock.sleeps, time.Minute) {
		t.Errorf("sleeps %v: want the slow retry after a 401", e.clock.sleeps)
	}
	if !slices.ContainsFunc(statuses, func(st api.HostStatus) bool { return st.Applied == 1 }) {
		t.Errorf("no status with generation 1 applied after the new token: %+v", statuses)
	}
}

func TestRunBacksOffAndTouchesNothing(t *testing.T) {
	e := newEnv(t)
	a := e.agent()
	mustApply(t, a, desired(1, ctr("web", 'a')))
	e.host.take()

	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // the appliance is away

	ctx, cancel := testContext(t)
	defer cancel()
	rc := runConfig(e, a, func() (api.HostAgent, error) { return api.HostAgent{Server: url, Host: "h1", Token: "tok"}, nil })
	var sleeps []time.Duration
	rc.Sleep = func(ctx context.Context, d time.Duration) error {
		sleeps = append(sleeps, d)
		if len(sleeps) == 9 {
			cancel()
		}
		return e.clock.Sleep(ctx, d)
	}
	if err := Run(ctx, rc); err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 60}
	for i := range want {
		want[i] *= time.Second
	}
	if !slices.Equal(sleeps, want) {
		t.Errorf("backoff %v, want %v", sleeps, want)
	}
	equalCalls(t, "while the appliance is away", e.host.take(), nil)
	if _, ok := e.host.containers["web"]; !ok {
		t.Error("web is gone while the appliance was away")
	}
}

func TestRunJitter(t *testing.T) {
	var rc RunConfig
	rc.setDefaults()
	for range 100 {
		if d := rc.Jitter(10 * time.Second); d < 5*time.Second || d > 10*time.Second {
			t.Fatalf("Jitter(10s) = %v, want between 5s and 10s", d)
		}
	}
}

func TestRunReportsChanges(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := testContext(t)
	defer cancel()
	fa := &fakeAppliance{t: t, desired: desired(1, ctr("web", 'a')), tokens: map[string]bool{"tok": true}}
	applied := make(chan struct{})
	fa.onGet = func(n int, r *http.Request) {
		if n == 2 { // generation 1 is applied: hold this poll, as the appliance does
			close(applied)
			<-r.Context().Done()
		}
	}
	srv := httptest.NewServer(fa)
	defer srv.Close()

	ticked, tick := make(chan struct{}), make(chan struct{})
	rc := runConfig(e, e.agent(), func() (api.HostAgent, error) { return api.HostAgent{Server: srv.URL, Host: "h1", Token: "tok"}, nil })
	rc.Tick = func(ctx context.Context, d time.Duration) error {
		select {
		case ticked <- struct{}{}: // the reporter's look is done
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case <-tick:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	done := make(chan error)
	go func() { done <- Run(ctx, rc) }()
	<-applied
	<-ticked
	look := func() int {
		tick <- struct{}{}
		<-ticked
		_, st := fa.snapshot()
		return len(st)
	}
	n := look()
	_, sts := fa.snapshot()
	if last := sts[len(sts)-1]; last.Applied != 1 || last.State != api.HostReady {
		t.Fatalf("last status %+v, want generation 1 ready", last)
	}

	if got := look(); got != n {
		t.Errorf("nothing changed and no time passed, yet %d statuses were posted", got-n)
	}
	e.host.mu.Lock()
	c := e.host.containers["web"]
	c.State = "exited"
	e.host.containers["web"] = c
	e.host.mu.Unlock()
	if got := look(); got != n+1 {
		t.Errorf("web exited: %d statuses posted, want 1", got-n)
	}
	_, sts = fa.snapshot()
	if last := sts[len(sts)-1]; last.State != api.HostDeploying || last.Containers[0].State != "exited" {
		t.Errorf("status after web exited: %+v", last)
	}
	e.clock.Sleep(ctx, 30*time.Second)
	if got := look(); got != n+2 {
		t.Errorf("after 30 s: %d statuses posted in all, want one more", got-n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRunRetryPolicy(t *testing.T) {
	e := newEnv(t)
	a := e.agent()
	mustApply(t, a, desired(1, ctr("web", 'a')))
	rc := runConfig(e, a, nil)
	rc.setDefaults()
	r := &runner{rc: rc, a: a}
	fail := func(gen int64, retryable bool) {
		a.recordAttempt(Attempt{Generation: gen, Failed: true, Retryable: retryable, Time: e.clock.Now()})
	}
	check := func(what string, d *api.Desired, want bool) {
		t.Helper()
		if got := r.shouldApply(d); got != want {
			t.Errorf("%s: shouldApply = %v, want %v", what, got, want)
		}
	}
	check("the applied generation", desired(1, ctr("web", 'a')), false)
	check("a new generation", desired(2, ctr("web", 'b')), true)

	fail(2, false) // before this run: a restart tries it once more
	check("rolled back before this run", desired(2, ctr("web", 'b')), true)
	r.tried, r.triedAny = 2, true // this run tried it, and it was rolled back again
	e.clock.Sleep(context.Background(), time.Hour)
	check("rolled back in this run, an hour on", desired(2, ctr("web", 'b')), false)
	check("the next generation", desired(3, ctr("web", 'c')), true)
	check("back at the applied generation", desired(1, ctr("web", 'a')), true)

	fail(2, true) // a pull failed: nothing changed on the host
	check("a failed pull, at once", desired(2, ctr("web", 'b')), false)
	e.clock.Sleep(context.Background(), time.Minute)
	check("a failed pull, a minute on", desired(2, ctr("web", 'b')), true)
}

func TestRunAnswersLogRequests(t *testing.T) {
	e := newEnv(t)
	e.host.containers["manual"] = ContainerInfo{ID: "m", Name: "manual", State: "running"}
	ctx, cancel := testContext(t)
	defer cancel()
	fa := &fakeAppliance{t: t, desired: desired(1, ctr("web", 'a')), tokens: map[string]bool{"tok": true}}
	fa.onGet = func(n int, r *http.Request) {
		fa.mu.Lock()
		defer fa.mu.Unlock()
		switch n {
		case 2: // with the same Desired, two operators' requests
			fa.desired.Logs = []api.LogRequest{{ID: "r1", Container: "web", Tail: 5}, {ID: "r2", Container: "manual", Follow: true}}
		case 3:
			fa.desired.Logs = nil
		}
	}
	fa.logged = make(chan string, 2)
	srv := httptest.NewServer(fa)
	defer srv.Close()
	ha := api.HostAgent{Server: srv.URL, Host: "h1", Token: "tok"}
	done := make(chan error)
	go func() { done <- Run(ctx, runConfig(e, e.agent(), func() (api.HostAgent, error) { return ha, nil })) }()
	for range 2 {
		select {
		case <-fa.logged:
		case <-ctx.Done():
			t.Fatal("the log requests were not answered")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	calls := e.host.take()
	var restarts, logs []string
	for _, c := range calls {
		switch {
		case strings.HasPrefix(c, "restart"):
			restarts = append(restarts, c)
		case strings.HasPrefix(c, "logs"):
			logs = append(logs, c)
		}
	}
	if len(restarts) != 1 {
		t.Errorf("restarts %v: a Desired carrying log requests is no new generation", restarts)
	}
	if want := []string{"logs web follow=false tail=5"}; !slices.Equal(logs, want) {
		t.Errorf("podman logs %v, want %v (never of a container cairn did not create)", logs, want)
	}
	fa.mu.Lock()
	defer fa.mu.Unlock()
	if got := fa.logs["r1"]; got != "web line 1\nweb line 2\n" {
		t.Errorf("posted for r1: %q", got)
	}
	if got := fa.logs["r2"]; !strings.Contains(got, `no container "manual" of cairn's`) {
		t.Errorf("posted for r2: %q, want a refusal", got)
	}
}
