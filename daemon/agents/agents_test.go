package agents

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/airgap/airgaptest"
	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/daemon/token"
	"github.com/cairn-appliance/cairn/site"
)

const (
	macWeb     = "52:54:00:20:00:11"
	macUnknown = "52:54:00:99:00:01"
)

var image = bytes.Repeat([]byte{0, 1, 2, 3}, 4096)

type env struct {
	st   state.Store
	srv  *httptest.Server
	tok  *token.Issuer
	host string
}

// newEnv serves the agent API over a real bbolt state holding one pending site host, web-01,
// whose spec asks for the store's debian-12.
func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := state.Open(filepath.Join(t.TempDir(), "state.db"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	spec, _ := json.Marshal(map[string]any{"mac": macWeb, "os": "debian-12", "disk": "first-nonremovable", "timezone": "UTC",
		"ssh_authorized_keys": []string{"ssh-ed25519 AAAA ops@example"},
		"partitions":          []map[string]any{{"label": "data", "filesystem": "xfs", "mount": "/srv", "size": "1GiB"}}})
	if err := st.Update(context.Background(), func(tx state.Tx) error {
		return tx.PutHost(state.Host{Name: "web-01", MAC: macWeb, Phase: state.Pending, Provision: 1, Spec: spec})
	}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	airgaptest.FileStore(t, dir, nil, []airgaptest.OSImage{{Name: "debian-12", Content: image}})
	h, err := New(Config{Store: st, Content: airgap.NewStores(dir)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &env{st: st, srv: srv, tok: &token.Issuer{Store: st}, host: "web-01"}
}

// newToken mints a provisioning token, as a boot script does.
func (e *env) newToken(t *testing.T) string {
	t.Helper()
	tok, err := e.tok.Provisioning(context.Background(), e.host)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// do calls the API; token "" sends no Authorization header.
func (e *env) do(t *testing.T, method, mac, call, tok string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.srv.URL+api.Path(mac, call), r)
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

func (e *env) record(t *testing.T, name string) (state.Host, []state.Event) {
	t.Helper()
	var h state.Host
	var evs []state.Event
	if err := e.st.View(context.Background(), func(tx state.Tx) (err error) {
		if h, _, err = tx.Host(name); err != nil {
			return err
		}
		evs, err = tx.Latest(100, "")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return h, evs
}

func last(evs []state.Event) state.Event {
	if len(evs) == 0 {
		return state.Event{}
	}
	return evs[len(evs)-1]
}

// TestTokens walks one provisioning attempt: calls with no token and a wrong one are refused,
// the right one fetches the plan, reports progress and done, and then is refused as reused.
// Every refusal is a 401 with an event that names the machine and why.
func TestTokens(t *testing.T) {
	e := newEnv(t)
	tok := e.newToken(t)
	refused := func(t *testing.T, method, call, tok string, body any, why string) {
		t.Helper()
		code, b := e.do(t, method, macWeb, call, tok, body)
		if code != http.StatusUnauthorized || !strings.Contains(string(b), why) {
			t.Fatalf("%s %s with a %s token = %d %s, want 401", method, call, why, code, b)
		}
		_, evs := e.record(t, e.host)
		ev := last(evs)
		if ev.Kind != "agent.refused" || ev.Host != "web-01" || !strings.Contains(ev.Message, macWeb) || !strings.Contains(ev.Message, why+" token") {
			t.Errorf("after a %s token the last event is %+v, want agent.refused naming web-01, its MAC and why", why, ev)
		}
	}
	refused(t, http.MethodGet, api.CallPlan, "", nil, missing)
	refused(t, http.MethodGet, api.CallPlan, tok+"x", nil, wrong)
	refused(t, http.MethodPost, api.CallDone, token.Hash(tok), api.Done{}, wrong) // the hash is no token
	if h, _ := e.record(t, e.host); h.Phase != state.Pending {
		t.Fatalf("refused calls moved the host to %s", h.Phase)
	}

	code, b := e.do(t, http.MethodGet, macWeb, api.CallPlan, tok, nil)
	if code != http.StatusOK {
		t.Fatalf("plan with the right token = %d %s", code, b)
	}
	var plan api.ProvisionPlan
	if err := json.Unmarshal(b, &plan); err != nil {
		t.Fatal(err)
	}
	im := plan.Image
	if plan.Host != "web-01" || plan.Disk != "first-nonremovable" || im.Artifact != "debian-12" || im.Size != int64(len(image)) ||
		im.Format != api.FormatRaw || im.UncompressedSize != int64(len(image)) || !strings.HasPrefix(im.UncompressedDigest, "sha256:") ||
		im.URL != e.srv.URL+"/v2/os/debian-12/blobs/"+im.Digest || len(plan.Partitions) != 1 || plan.Partitions[0].SizeBytes != 1<<30 ||
		!strings.Contains(plan.ConfigDrive.UserData, `"ssh_authorized_keys":["ssh-ed25519 AAAA ops@example"]`) ||
		!strings.Contains(plan.ConfigDrive.MetaData, `"instance-id":"web-01-p1-`) || !strings.Contains(plan.ConfigDrive.Agent, `"host":"web-01"`) {
		t.Errorf("plan = %s", b)
	}
	if h, _ := e.record(t, e.host); h.Phase != state.Provisioning {
		t.Errorf("after the plan the host is %s, want provisioning", h.Phase)
	}
	if code, b := e.do(t, http.MethodPost, macWeb, api.CallProgress, tok, api.Progress{Step: "writing", Percent: 42, Message: "1.2 of 2.9 GiB\n\x1b[31m"}); code != http.StatusAccepted {
		t.Fatalf("progress = %d %s", code, b)
	}
	if h, _ := e.record(t, e.host); h.Progress != 42 || h.Message != "writing: 1.2 of 2.9 GiB [31m" {
		t.Errorf("after progress: %d%% %q", h.Progress, h.Message)
	}
	if code, b := e.do(t, http.MethodPost, macWeb, api.CallDone, tok, api.Done{WrittenDigest: im.UncompressedDigest}); code != http.StatusOK {
		t.Fatalf("done = %d %s", code, b)
	}
	h, evs := e.record(t, e.host)
	if h.Phase != state.Provisioned || h.Progress != 100 || h.ProvisionTokenHash != "" || !token.Matches(h.ProvisionTokenSpent, tok) || last(evs).Kind != "host.provisioned" {
		t.Errorf("after done: %+v, last event %+v", h, last(evs))
	}
	// The token died with done: every call with it is refused as reused.
	refused(t, http.MethodPost, api.CallDone, tok, api.Done{}, reused)
	refused(t, http.MethodGet, api.CallPlan, tok, nil, reused)
	if h, _ := e.record(t, e.host); h.Phase != state.Provisioned {
		t.Errorf("a reused token moved the host to %s", h.Phase)
	}
	// A machine the site does not name has no token to present.
	if code, _ := e.do(t, http.MethodGet, macUnknown, api.CallPlan, tok, nil); code != http.StatusUnauthorized {
		t.Errorf("plan for a MAC no site host has = %d, want 401", code)
	}
}

// TestFailedEndsTheAttempt: failed records the reason, and its token dies too.
func TestFailedEndsTheAttempt(t *testing.T) {
	e := newEnv(t)
	tok := e.newToken(t)
	if code, b := e.do(t, http.MethodPost, macWeb, api.CallFailed, tok, api.Failed{}); code != http.StatusBadRequest {
		t.Errorf("failed without a reason = %d %s, want 400", code, b)
	}
	if code, b := e.do(t, http.MethodPost, macWeb, api.CallFailed, tok, api.Failed{Step: "disk", Reason: "no disk matches first-nonremovable"}); code != http.StatusOK {
		t.Fatalf("failed = %d %s", code, b)
	}
	h, evs := e.record(t, e.host)
	if h.Phase != state.Failed || h.Reason != "disk: no disk matches first-nonremovable" || h.ProvisionTokenHash != "" || last(evs).Kind != "host.failed" {
		t.Errorf("after failed: %+v, last event %+v", h, last(evs))
	}
	if code, _ := e.do(t, http.MethodPost, macWeb, api.CallDone, tok, api.Done{}); code != http.StatusUnauthorized {
		t.Errorf("done after failed = %d, want 401", code)
	}
	// A new boot is a new attempt, with a new token that works.
	if code, b := e.do(t, http.MethodGet, macWeb, api.CallPlan, e.newToken(t), nil); code != http.StatusOK {
		t.Errorf("plan with the next attempt's token = %d %s", code, b)
	}
}

// TestProgressIsCoalesced: reports of one step within ProgressEvery are answered, not written.
func TestProgressIsCoalesced(t *testing.T) {
	e := newEnv(t)
	tok := e.newToken(t)
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	clock := t0
	defer func(f func() time.Time) { now = f }(now)
	now = func() time.Time { return clock }
	report := func(step string, pct int, tok string) int {
		code, _ := e.do(t, http.MethodPost, macWeb, api.CallProgress, tok, api.Progress{Step: step, Percent: pct})
		return code
	}
	if report("writing", 10, tok) != http.StatusAccepted || report("writing", 11, tok) != http.StatusAccepted {
		t.Fatal("progress refused")
	}
	if h, _ := e.record(t, e.host); h.Progress != 10 {
		t.Errorf("a report 0 s after the last one was recorded: progress %d, want 10", h.Progress)
	}
	// The check of the token is not coalesced away.
	if code := report("writing", 12, "bogus"); code != http.StatusUnauthorized {
		t.Errorf("a coalesced report with a wrong token = %d, want 401", code)
	}
	clock = t0.Add(3 * time.Second)
	report("writing", 30, tok)
	report("verifying", 31, tok) // a new step is recorded at once
	h, evs := e.record(t, e.host)
	if h.Progress != 31 || h.Message != "verifying" {
		t.Errorf("progress %d %q, want 31 verifying", h.Progress, h.Message)
	}
	steps := 0
	for _, ev := range evs {
		if ev.Kind == "host.progress" {
			steps++
		}
	}
	if steps != 2 {
		t.Errorf("%d progress events, want 2 (one per step)", steps)
	}
}

func inventory(mac string) api.Inventory {
	return api.Inventory{MAC: mac, Firmware: api.UEFI, MemoryBytes: 2 << 30, CPU: api.CPU{Arch: "amd64", Threads: 2},
		System: api.System{Vendor: "QEMU", Product: "Standard PC (Q35 + ICH9, 2009)"},
		NICs:   []api.NIC{{Name: "eth0", MAC: mac, Driver: "virtio_net", SpeedMbps: 1000, Carrier: true}},
		Disks: []api.Disk{
			{Name: "sr0", Path: "/dev/sr0", Removable: true, SizeBytes: 1 << 20},
			{Name: "vda", Path: "/dev/vda", ByPath: "/dev/disk/by-path/pci-0000:00:05.0", ByID: []string{"/dev/disk/by-id/virtio-disk0 \"evil\""}, SizeBytes: 20 << 30, Model: "QEMU HARDDISK\nmac = \"x\"", Serial: "disk0"},
		}}
}

// TestDiscovery: a machine the site does not name reports its inventory with no token and
// becomes a discovered record, updated by its later reports; its snippet is a host file.
func TestDiscovery(t *testing.T) {
	e := newEnv(t)
	code, b := e.do(t, http.MethodPost, strings.ToUpper(macUnknown), api.CallInventory, "", inventory(macUnknown))
	var reg api.Registered
	_ = json.Unmarshal(b, &reg)
	if code != http.StatusOK || reg.Host != "discovered-525400990001" || !reg.Discovered {
		t.Fatalf("discovery = %d %s", code, b)
	}
	h, evs := e.record(t, reg.Host)
	if h.Phase != state.Discovered || h.MAC != macUnknown || len(h.Inventory) == 0 || last(evs).Kind != "host.discovered" {
		t.Fatalf("record %+v, last event %+v", h, last(evs))
	}
	n := len(evs)
	// The same report again writes nothing; a new one updates the record.
	e.do(t, http.MethodPost, macUnknown, api.CallInventory, "", inventory(macUnknown))
	if _, evs := e.record(t, reg.Host); len(evs) != n {
		t.Errorf("the same inventory again added %d events", len(evs)-n)
	}
	inv := inventory(macUnknown)
	inv.MemoryBytes = 4 << 30
	e.do(t, http.MethodPost, macUnknown, api.CallInventory, "", inv)
	if h, evs := e.record(t, reg.Host); !strings.Contains(string(h.Inventory), `"memory_bytes":4294967296`) || last(evs).Kind != "host.inventory" {
		t.Errorf("an updated inventory was not recorded: %s", h.Inventory)
	}

	// The snippet is a host file a site loads, with the MAC and the first fixed disk.
	snip := Snippet(h)
	if !strings.Contains(snip, `mac = "`+macUnknown+`"`) || strings.Contains(snip, "\nmac = \"x\"") {
		t.Errorf("snippet:\n%s", snip)
	}
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "hosts"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "site.toml"), []byte("[site]\nname = \"lab\"\n[network]\ninterface = \"eth1\"\ncidr = \"10.20.0.0/24\"\nappliance_ip = \"10.20.0.1\"\ndhcp = \"off\"\n[defaults]\nos = \"debian-12\"\ndisk = \"first-nonremovable\"\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "hosts", "lab-01.toml"), []byte(snip), 0o644))
	s, err := site.Load(dir)
	if err != nil {
		t.Fatalf("the snippet does not load: %v\n%s", err, snip)
	}
	if got := s.Hosts[0]; got.MAC.String() != macUnknown || got.Disk != "/dev/disk/by-path/pci-0000:00:05.0" {
		t.Errorf("the snippet loads as mac %s disk %s, want %s and the by-path link (the by-id one has a space)", got.MAC, got.Disk, macUnknown)
	}
	if Snippet(state.Host{Name: "web-01", Phase: state.Pending, Inventory: h.Inventory}) != "" {
		t.Error("a site host got a snippet")
	}

	// A site host's MAC cannot be reported without its token: the discovery agent reboots.
	code, b = e.do(t, http.MethodPost, macWeb, api.CallInventory, "", inventory(macWeb))
	if _, evs := e.record(t, e.host); code != http.StatusUnauthorized || last(evs).Kind != "agent.refused" || last(evs).Host != "web-01" {
		t.Errorf("discovery of a site host = %d %s, last event %+v", code, b, last(evs))
	}
	if h, _ := e.record(t, e.host); len(h.Inventory) != 0 {
		t.Error("a call without a token wrote a site host's inventory")
	}
	// With the token, the provisioning agent's inventory goes to the host.
	if code, b := e.do(t, http.MethodPost, macWeb, api.CallInventory, e.newToken(t), inventory(macWeb)); code != http.StatusOK {
		t.Errorf("inventory with the token = %d %s", code, b)
	}
	if h, _ := e.record(t, e.host); len(h.Inventory) == 0 {
		t.Error("the provisioning agent's inventory was not recorded")
	}
}

func TestBadCalls(t *testing.T) {
	e := newEnv(t)
	tok := e.newToken(t)
	big := api.Inventory{MAC: macUnknown, AgentVersion: strings.Repeat("x", api.MaxBody)}
	for _, c := range []struct {
		method, mac, call, tok string
		body                   any
		code                   int
	}{
		{http.MethodPost, "nonsense", api.CallInventory, "", inventory(macUnknown), http.StatusBadRequest},
		{http.MethodPost, "01:00:5e:00:00:01", api.CallInventory, "", inventory("01:00:5e:00:00:01"), http.StatusBadRequest},
		{http.MethodPost, macUnknown, api.CallInventory, "", inventory(macWeb), http.StatusBadRequest}, // not the path's MAC
		{http.MethodPost, macUnknown, api.CallInventory, "", big, http.StatusRequestEntityTooLarge},
		{http.MethodPost, macWeb, api.CallProgress, tok, api.Progress{Step: "Writing\n"}, http.StatusBadRequest},
		{http.MethodPost, macWeb, api.CallPlan, tok, nil, http.StatusMethodNotAllowed},
	} {
		if code, b := e.do(t, c.method, c.mac, c.call, c.tok, c.body); code != c.code {
			t.Errorf("%s %s %s = %d %s, want %d", c.method, c.mac, c.call, code, b, c.code)
		}
	}
	// Not JSON at all.
	resp, err := http.Post(e.srv.URL+api.Path(macUnknown, api.CallInventory), "application/json", strings.NewReader("{"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a broken body = %d, want 400", resp.StatusCode)
	}
}

// TestDiscoveredAreBounded: past MaxDiscovered, discovery records nothing more.
func TestDiscoveredAreBounded(t *testing.T) {
	st := state.NewMemory(0)
	h, err := New(Config{Store: st, Content: airgap.NewStores(t.TempDir()), MaxDiscovered: 2})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	e := &env{st: st, srv: srv}
	for i, want := range []int{200, 200, 503} {
		mac := fmt.Sprintf("52:54:00:99:00:%02x", i)
		if code, b := e.do(t, http.MethodPost, mac, api.CallInventory, "", inventory(mac)); code != want {
			t.Errorf("discovery %d = %d %s, want %d", i, code, b, want)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
