package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/site"
)

// fixture serves the API over a state of 20 hosts in mixed phases.
func fixture(t *testing.T, loadError string) *httptest.Server {
	t.Helper()
	st := state.NewMemory(0)
	phases := []state.Phase{state.Ready, state.Ready, state.Ready, state.Provisioning, state.Deploying, state.Pending, state.Failed, state.Discovered, state.Provisioned, state.Ready}
	err := st.Update(context.Background(), func(tx state.Tx) error {
		for i := range 20 {
			h := state.Host{Name: fmt.Sprintf("node-%02d", i), MAC: fmt.Sprintf("52:54:00:00:00:%02x", i), IP: fmt.Sprintf("10.20.0.%d", 10+i),
				Phase: phases[i%len(phases)], Updated: time.Now(), HostTokenHash: "secret-hash"}
			switch h.Phase {
			case state.Provisioning:
				h.Progress, h.Message = 40+i, "writing: 1.2 of 2.9 GiB"
			case state.Discovered:
				h.Inventory = json.RawMessage(fmt.Sprintf(`{"mac":%q,"disks":[{"name":"vda","path":"/dev/vda","by_id":["/dev/disk/by-id/virtio-d%d"],"size_bytes":21474836480,"model":"<b>QEMU</b>"}]}`, h.MAC, i))
			case state.Failed:
				h.Reason = "disk /dev/sda not found"
			case state.Ready:
				h.Agent = json.RawMessage(`{"applied":1,"attempted":1,"state":"ready","containers":[{"name":"web","state":"running","health":"healthy","restarts":2}]}`)
			}
			if err := tx.PutHost(h); err != nil {
				return err
			}
			if err := tx.Append(state.Event{Host: h.Name, Kind: "host.phase", Message: "now " + string(h.Phase)}); err != nil {
				return err
			}
		}
		return tx.SetGeneration(state.Generation{Applied: 7, Attempted: 8})
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := site.Load("../../examples/site")
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{Store: st, Current: func() Current { return Current{Site: s, LoadError: loadError} }, Version: "0.1.0"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string, v any) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if v != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("GET %s: %v\n%s", url, err, b)
		}
	}
	return resp.StatusCode, string(b)
}

func TestJSON(t *testing.T) {
	srv := fixture(t, "")
	var st Status
	get(t, srv.URL+"/api/v1/status", &st)
	if st.Site != "rack1" || st.Hosts != 20 || st.Phases[state.Ready] != 8 || st.Generation.Applied != 7 {
		t.Errorf("status = %+v", st)
	}
	var hosts []Host
	_, raw := get(t, srv.URL+"/api/v1/hosts", &hosts)
	if len(hosts) != 20 || hosts[0].Name != "node-00" || hosts[0].LastEvent == nil || hosts[0].LastEvent.Message != "now ready" {
		t.Errorf("hosts = %+v", hosts)
	}
	if strings.Contains(raw, "secret-hash") {
		t.Error("/api/v1/hosts shows a token hash")
	}
	var d HostDetail
	get(t, srv.URL+"/api/v1/hosts/node-06", &d)
	if d.Phase != state.Failed || d.Reason == "" || len(d.Events) != 1 {
		t.Errorf("host detail = %+v", d)
	}
	// A discovered machine comes with its host file; the others with none.
	get(t, srv.URL+"/api/v1/hosts/node-07", &d)
	if d.Phase != state.Discovered || !strings.Contains(d.Snippet, `mac = "52:54:00:00:00:07"`) || !strings.Contains(d.Snippet, `disk = "/dev/disk/by-id/virtio-d7"`) || len(d.Inventory) == 0 {
		t.Errorf("discovered host detail = %+v", d)
	}
	if hosts[3].Message != "writing: 1.2 of 2.9 GiB" || hosts[3].Snippet != "" || hosts[7].Snippet == "" {
		t.Errorf("hosts[3] = %+v, hosts[7] = %+v: want the agent's message on the one, a snippet on the other", hosts[3], hosts[7])
	}
	if code, body := get(t, srv.URL+"/api/v1/hosts/nope", nil); code != http.StatusNotFound || !strings.Contains(body, "no host named") {
		t.Errorf("unknown host: %d %s", code, body)
	}
	var evs []state.Event
	get(t, srv.URL+"/api/v1/events?after=5&limit=3", &evs)
	if len(evs) != 3 || evs[0].Seq != 6 {
		t.Errorf("events = %+v", evs)
	}
	get(t, srv.URL+"/api/v1/events?host=node-03", &evs)
	if len(evs) != 1 || evs[0].Host != "node-03" {
		t.Errorf("events of one host = %+v", evs)
	}
	if code, _ := get(t, srv.URL+"/api/v1/events?limit=x", nil); code != http.StatusBadRequest {
		t.Errorf("a bad limit: %d", code)
	}
	var p struct {
		Items []struct{ Host, Action string }
	}
	get(t, srv.URL+"/api/v1/plan", &p)
	if len(p.Items) == 0 {
		t.Error("the plan of the example site against 20 other hosts is empty")
	}
}

func TestMetrics(t *testing.T) {
	srv := fixture(t, "hosts/x.toml:3:1: mac: ...")
	_, body := get(t, srv.URL+"/metrics", nil)
	for _, want := range []string{`cairn_hosts{phase="ready"} 8`, `cairn_hosts{phase="failed"} 2`, "cairn_site_generation_applied 7", "cairn_site_load_ok 0"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

var rowRe = regexp.MustCompile(`<tr id="host-(node-\d+)">`)

func TestPage(t *testing.T) {
	srv := fixture(t, "hosts/x.toml:3:1: mac: expected a MAC address")
	code, body := get(t, srv.URL+"/", nil)
	if code != http.StatusOK {
		t.Fatalf("GET / = %d", code)
	}
	if n := len(rowRe.FindAllString(body, -1)); n != 20 {
		t.Errorf("the page shows %d host rows, want 20", n)
	}
	for _, want := range []string{"hosts/x.toml:3:1", `http-equiv="refresh"`, `name="viewport"`, "disk /dev/sda not found", "<progress",
		"writing: 1.2 of 2.9 GiB", `<span class="mono">web</span> running (healthy) <span class="meta">2 restarts</span>`, "Discovered machines", `id="snippet-node-07"`, "mac = &#34;52:54:00:00:00:07&#34;", "&lt;b&gt;QEMU&lt;/b&gt;"} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if code, _ := get(t, srv.URL+"/nope", nil); code != http.StatusNotFound {
		t.Errorf("GET /nope = %d, want 404", code)
	}
}

// TestPageInChromium renders the page in a real browser, saves a screenshot as a test
// artifact (go test -artifacts keeps it), and checks the rows the browser rendered.
func TestPageInChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed; scripts/deps.sh installs it")
	}
	srv := fixture(t, "")
	dir := t.ArtifactDir()
	profile := t.TempDir()
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + profile, "--window-size=420,1400"}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	shot := filepath.Join(dir, "status-page.png")
	if out, err := exec.CommandContext(ctx, chromium, append(args, "--screenshot="+shot, srv.URL+"/")...).CombinedOutput(); err != nil {
		t.Fatalf("chromium screenshot: %v\n%s", err, out)
	}
	if info, err := os.Stat(shot); err != nil || info.Size() < 1000 {
		t.Fatalf("no screenshot: %v", err)
	}
	dom, err := exec.CommandContext(ctx, chromium, append(args, "--dump-dom", srv.URL+"/")...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	rows := rowRe.FindAllStringSubmatch(string(dom), -1)
	if len(rows) != 20 || rows[0][1] != "node-00" || rows[19][1] != "node-19" {
		t.Errorf("chromium rendered %d host rows, want node-00 … node-19", len(rows))
	}
	t.Logf("screenshot: %s", shot)
}
