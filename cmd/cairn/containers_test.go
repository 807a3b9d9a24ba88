package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	agentapi "github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/daemon/api"
	"github.com/cairn-appliance/cairn/daemon/state"
)

// TestStatusShowsContainers: the host agent's report is in cairn status (a summary) and in
// cairn host show (a row per container).
func TestStatusShowsContainers(t *testing.T) {
	report, _ := json.Marshal(agentapi.HostStatus{Applied: 3, Attempted: 4, State: agentapi.HostFailed, Reason: "container web: health check unhealthy within 2m0s",
		Containers: []agentapi.ContainerStatus{
			{Name: "web", State: "running", Health: "healthy", Restarts: 1, Digest: "sha256:0123456789abcdef0123"},
			{Name: "metrics", State: "exited", Restarts: 5},
		}})
	st := state.NewMemory(0)
	_ = st.Update(context.Background(), func(tx state.Tx) error {
		return tx.PutHost(state.Host{Name: "web-01", MAC: "52:54:00:20:00:11", Phase: state.Failed, Reason: "container web: health check unhealthy within 2m0s",
			ContainersGeneration: 4, Agent: report, AgentSeen: time.Now()})
	})
	h, err := api.New(api.Config{Store: st, Current: func() api.Current { return api.Current{} }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	code, out, errOut := cairn(t, "status", "--server", srv.URL)
	if code != exitOK || !strings.Contains(out, "1/2 ok (gen 3)") {
		t.Errorf("status: exit %d %s\n%s", code, errOut, out)
	}
	code, out, errOut = cairn(t, "host", "show", "web-01", "--server", srv.URL)
	for _, want := range []string{"agent       failed: generation 3 applied of 4 (4 tried): container web: health check unhealthy",
		"web      running  healthy  1", "sha256:0123456789ab", "metrics  exited   -        5"} {
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("host show lacks %q: exit %d %s\n%s", want, code, errOut, out)
		}
	}
}
