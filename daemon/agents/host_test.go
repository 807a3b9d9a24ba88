package agents

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/daemon/plan"
	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/daemon/token"
	"github.com/cairn-appliance/cairn/site"
	"github.com/cairn-appliance/cairn/site/sitetest"
)

const webDigest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"

type hostEnv struct {
	st       state.Store
	srv      *httptest.Server
	web, db  string // the hosts' tokens
	desired  map[string]plan.Desired
	siteData *site.Site
	handler  *Handler
}

// newHostEnv serves the agent API over a real state holding two provisioned hosts of a small
// site: web-01 runs container web (with a config file), db-01 runs nothing.
func newHostEnv(t *testing.T) *hostEnv {
	t.Helper()
	dir := t.TempDir()
	sitetest.Write(t, dir, map[string]string{
		"site.toml": "[site]\nname = \"lab\"\n[network]\ninterface = \"eth1\"\ncidr = \"10.0.0.0/24\"\nappliance_ip = \"10.0.0.1\"\ndhcp = \"proxy\"\n[defaults]\nos = \"debian-12\"\ndisk = \"first-nonremovable\"\n",
		"roles/web.toml": `[[container]]
name = "web"
image = "example.com/httpd:1"
ports = ["80:80"]
[container.health]
command = ["wget", "-q", "http://127.0.0.1/"]
[[container.file]]
source = "files/index.html"
target = "/www/index.html"
`,
		"files/index.html":  "<h1>lab</h1>\n",
		"hosts/web-01.toml": "mac = \"52:54:00:20:00:11\"\nroles = [\"web\"]\n",
		"hosts/db-01.toml":  "mac = \"52:54:00:20:00:21\"\n",
	})
	s, err := site.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	d, err := (&plan.Memo{Resolve: func(site.Image) (string, error) { return webDigest, nil }}).Desire(s)
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(filepath.Join(t.TempDir(), "state.db"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	e := &hostEnv{st: st, desired: d, siteData: s}
	var webHash, dbHash string
	e.web, webHash = token.New()
	e.db, dbHash = token.New()
	must(t, st.Update(context.Background(), func(tx state.Tx) error {
		w := d["web-01"]
		if err := tx.PutHost(state.Host{Name: "web-01", MAC: "52:54:00:20:00:11", Phase: state.Provisioned, HostTokenHash: webHash,
			Containers: w.Containers, Digests: w.Digests, ContainersGeneration: 1}); err != nil {
			return err
		}
		return tx.PutHost(state.Host{Name: "db-01", MAC: "52:54:00:20:00:21", Phase: state.Provisioned, HostTokenHash: dbHash})
	}))
	h, err := New(Config{Store: st, Content: airgap.NewStores(t.TempDir()), Site: func() *site.Site { return s }})
	if err != nil {
		t.Fatal(err)
	}
	e.handler = h
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	return e
}

func (e *hostEnv) call(t *testing.T, method, host, call, query, tok string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.srv.URL+api.HostPath(host, call)+query, r)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (e *hostEnv) host(t *testing.T, name string) state.Host {
	t.Helper()
	var h state.Host
	must(t, e.st.View(context.Background(), func(tx state.Tx) (err error) { h, _, err = tx.Host(name); return err }))
	return h
}

func TestDesired(t *testing.T) {
	e := newHostEnv(t)
	for _, tc := range []struct{ why, host, tok string }{
		{"no token", "web-01", ""},
		{"a wrong token", "web-01", "nope"},
		{"another host's token", "web-01", e.db},
		{"a host the state lacks", "ghost", e.web},
	} {
		if code, body := e.call(t, "GET", tc.host, api.CallDesired, "", tc.tok, nil); code != http.StatusUnauthorized {
			t.Errorf("%s: %d %s, want 401", tc.why, code, body)
		}
	}
	code, body := e.call(t, "GET", "web-01", api.CallDesired, "", e.web, nil)
	if code != http.StatusOK {
		t.Fatalf("desired: %d %s", code, body)
	}
	var d api.Desired
	must(t, json.Unmarshal(body, &d))
	if d.Host != "web-01" || d.Generation != 1 || len(d.Containers) != 1 || !strings.HasPrefix(d.Registry, "127.0.0.1:") {
		t.Fatalf("desired = %+v", d)
	}
	c := d.Containers[0]
	if c.Image != "example.com/httpd:1" || c.Digest != webDigest || c.Restart != "always" || c.Network != "bridge" ||
		c.Health == nil || c.Health.Interval != "30s" || c.Health.Retries != 3 || len(c.Files) != 1 ||
		string(c.Files[0].Data) != "<h1>lab</h1>\n" || c.Files[0].Target != "/www/index.html" {
		t.Errorf("container = %+v", c)
	}
	code, body = e.call(t, "GET", "db-01", api.CallDesired, "", e.db, nil)
	if code != http.StatusOK || !strings.Contains(string(body), `"containers":[]`) {
		t.Errorf("a host without containers: %d %s", code, body)
	}
}

func TestDesiredLongPoll(t *testing.T) {
	e := newHostEnv(t)
	// Control: nothing changes, so the answer comes after the wait, with the same generation.
	start := time.Now()
	code, body := e.call(t, "GET", "web-01", api.CallDesired, "?generation=1&wait=1", e.web, nil)
	if code != http.StatusOK || !strings.Contains(string(body), `"generation":1`) || time.Since(start) < time.Second {
		t.Fatalf("an unchanged long-poll: %d after %v: %s", code, time.Since(start), body)
	}
	got := make(chan string, 1)
	go func() {
		_, body := e.call(t, "GET", "web-01", api.CallDesired, "?generation=1&wait=60", e.web, nil)
		got <- string(body)
	}()
	time.Sleep(200 * time.Millisecond) // let it wait: the change must wake it, not a new read
	must(t, e.st.Update(context.Background(), func(tx state.Tx) error {
		h, _, err := tx.Host("web-01")
		if err != nil {
			return err
		}
		h.ContainersGeneration = 2
		return tx.PutHost(h)
	}))
	select {
	case b := <-got:
		if !strings.Contains(b, `"generation":2`) {
			t.Errorf("woken long-poll answered %s", b)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a long-poll was not woken by its host's new generation")
	}
}

func TestHostStatus(t *testing.T) {
	e := newHostEnv(t)
	report := func(tok string, st api.HostStatus) int {
		code, _ := e.call(t, "POST", "web-01", api.CallStatus, "", tok, st)
		return code
	}
	if code := report(e.db, api.HostStatus{State: api.HostReady}); code != http.StatusUnauthorized {
		t.Errorf("another host's token reported: %d", code)
	}
	if code := report(e.web, api.HostStatus{State: "sleepy"}); code != http.StatusBadRequest {
		t.Errorf("an unknown state: %d", code)
	}
	steps := []struct {
		st     api.HostStatus
		phase  state.Phase
		reason string
	}{
		{api.HostStatus{Applied: 0, Attempted: 1, State: api.HostDeploying}, state.Deploying, ""},
		{api.HostStatus{Applied: 1, Attempted: 1, State: api.HostReady, Containers: []api.ContainerStatus{{Name: "web", State: "running", Health: "healthy", Digest: webDigest}}}, state.Ready, ""},
		{api.HostStatus{Applied: 1, Attempted: 1, State: api.HostFailed, Reason: "unit web.service: job result failed"}, state.Failed, "unit web.service: job result failed"},
		{api.HostStatus{Applied: 0, Attempted: 0, State: api.HostReady}, state.Deploying, ""}, // ready, but on an older generation
	}
	for i, s := range steps {
		if code := report(e.web, s.st); code != http.StatusAccepted {
			t.Fatalf("step %d: %d", i, code)
		}
		h := e.host(t, "web-01")
		if h.Phase != s.phase || h.Reason != s.reason {
			t.Errorf("step %d: phase %s (%q), want %s (%q)", i, h.Phase, h.Reason, s.phase, s.reason)
		}
	}
	// A host being provisioned again keeps its phase, whatever an old agent says.
	must(t, e.st.Update(context.Background(), func(tx state.Tx) error {
		h, _, _ := tx.Host("web-01")
		h.Phase = state.Pending
		return tx.PutHost(h)
	}))
	report(e.web, api.HostStatus{Applied: 1, Attempted: 1, State: api.HostReady})
	if h := e.host(t, "web-01"); h.Phase != state.Pending {
		t.Errorf("a pending host turned %s", h.Phase)
	}
}
