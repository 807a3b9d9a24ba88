package netboot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/agent/api"
)

type fakeMachine struct {
	netErr error
	disks  []api.Disk // nil: one 1 GiB /dev/vda
}

func (fakeMachine) LoadModules(say func(string, ...any)) error {
	say("cairn-agent: loaded kernel modules failover net_failover virtio_net")
	return nil
}

func (m fakeMachine) Network(context.Context, string) (Lease, error) {
	return Lease{Interface: "eth0", Address: "10.20.0.200/24", Server: "10.20.0.1"}, m.netErr
}

func (m fakeMachine) Inventory(mac string) (api.Inventory, error) {
	disks := m.disks
	if disks == nil {
		disks = []api.Disk{{Name: "vda", Path: "/dev/vda", SizeBytes: 1 << 30, Serial: "pxe-disk"}}
	}
	return api.Inventory{MAC: mac, Firmware: api.BIOS, CPU: api.CPU{Arch: "amd64", Threads: 1}, MemoryBytes: 512 << 20,
		NICs:  []api.NIC{{Name: "eth0", MAC: mac, Driver: "virtio_net", Carrier: true}},
		Disks: disks}, nil
}

// fakeAPI answers the agent API's calls from a table, and records them.
type fakeAPI struct {
	mu      sync.Mutex
	calls   []string          // "POST inventory token" ...
	bodies  map[string][]byte // by call
	answers map[string][]answer
}

type answer struct {
	code int
	body any
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	call := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
	if r.URL.Path != api.Path(mac, call) {
		http.Error(w, "wrong path "+r.URL.Path, http.StatusNotFound)
		return
	}
	body, _ := io.ReadAll(r.Body)
	auth := "none"
	if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		auth = t
	}
	f.mu.Lock()
	f.calls = append(f.calls, r.Method+" "+call+" "+auth)
	f.bodies[call] = body
	a := answer{http.StatusNotFound, api.Error{Error: "no such call"}}
	if q := f.answers[call]; len(q) > 0 {
		a = q[0]
		if len(q) > 1 {
			f.answers[call] = q[1:]
		}
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.code)
	_ = json.NewEncoder(w).Encode(a.body)
}

const mac = "52:54:00:99:00:01"

func run(t *testing.T, mode, tok string, m Machine, answers map[string][]answer) (End, error, *fakeAPI, string) {
	t.Helper()
	f := &fakeAPI{bodies: map[string][]byte{}, answers: answers}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	var out bytes.Buffer
	end, err := Run(context.Background(), Config{Args: Args{Server: srv.URL, Mode: mode, Token: tok, MAC: mac}, Machine: m,
		Console: &out, Version: "test", RetryDelay: time.Millisecond, Tries: 3, PollEvery: time.Millisecond, ProgressEvery: time.Millisecond})
	return end, err, f, out.String()
}

func TestDiscover(t *testing.T) {
	end, err, f, out := run(t, api.ModeDiscover, "", fakeMachine{}, map[string][]answer{
		"inventory": {
			{http.StatusServiceUnavailable, api.Error{Error: "busy"}},
			{http.StatusOK, api.Registered{Host: "discovered-525400990001", Discovered: true}},
			{http.StatusOK, api.Registered{Host: "discovered-525400990001", Discovered: true}},
			{http.StatusUnauthorized, api.Error{Error: "missing token"}},
		},
	})
	// Reported (one 503, tried again), reported again while waiting, then named by the site:
	// 401, and the machine reboots to be provisioned.
	if end != Reboot || !errors.Is(err, ErrSiteHost) {
		t.Fatalf("Run() = %v, %v; want Reboot, ErrSiteHost\n%s", end, err, out)
	}
	if got := strings.Join(f.calls, ", "); got != "POST inventory none, POST inventory none, POST inventory none, POST inventory none" {
		t.Errorf("calls: %s", got)
	}
	var inv api.Inventory
	if err := json.Unmarshal(f.bodies["inventory"], &inv); err != nil || inv.MAC != mac || inv.AgentVersion != "test" || len(inv.Disks) != 1 {
		t.Errorf("the inventory sent: %s (%v)", f.bodies["inventory"], err)
	}
	for _, want := range []string{
		"cairn-agent: netboot discover on " + mac,
		"eth0 (" + mac + ") has 10.20.0.200/24 from DHCP server 10.20.0.1",
		"inventory: 1 NIC, 1 disk (vda 1.0 GiB), 1 CPU thread, 512.0 MiB memory, bios",
		"503 Service Unavailable: busy; trying again",
		"cairn-agent: discovered, reported to http://",
		"rebooting to be provisioned",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the console does not show %q:\n%s", want, out)
		}
	}
	if !strings.HasPrefix(out, "cairn-agent: netboot discover on "+mac) {
		t.Errorf("the marker is not the first line:\n%s", out)
	}
}

// A machine the site names meanwhile gets 401 for its discovery report: it reboots.
func TestDiscoverSiteHost(t *testing.T) {
	end, err, _, out := run(t, api.ModeDiscover, "", fakeMachine{}, map[string][]answer{
		"inventory": {{http.StatusUnauthorized, api.Error{Error: "missing token"}}},
	})
	if end != Reboot || !errors.Is(err, ErrSiteHost) || !strings.Contains(out, "rebooting to be provisioned") {
		t.Errorf("Run() = %v, %v; want Reboot, ErrSiteHost\n%s", end, err, out)
	}
}

// A plan the daemon refuses ends the attempt as failed, with the daemon's reason.
func TestProvisionPlanRefused(t *testing.T) {
	end, err, f, out := run(t, api.ModeProvision, token, fakeMachine{}, map[string][]answer{
		"inventory": {{http.StatusOK, api.Registered{Host: "web-01"}}},
		"plan":      {{http.StatusConflict, api.Error{Error: "no plan for web-01: its OS image debian-12: not in the store"}}},
		"failed":    {{http.StatusOK, struct{}{}}},
	})
	if end != Reboot || err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("Run() = %v, %v; want Reboot and the 409\n%s", end, err, out)
	}
	var failed api.Failed
	_ = json.Unmarshal(f.bodies["failed"], &failed)
	if failed.Step != "plan" || !strings.Contains(failed.Reason, "not in the store") {
		t.Errorf("the failure reported: %s", f.bodies["failed"])
	}
}

func TestNoNetwork(t *testing.T) {
	end, err, f, _ := run(t, api.ModeProvision, token, fakeMachine{netErr: errors.New("no DHCP lease on eth0")}, nil)
	if end != Reboot || err == nil || !strings.Contains(err.Error(), "no DHCP lease") || len(f.calls) != 0 {
		t.Errorf("Run() = %v, %v with calls %q; want Reboot, the network's error, no call", end, err, f.calls)
	}
}
