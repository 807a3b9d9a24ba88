package main

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-appliance/cairn/daemon/api"
	"github.com/cairn-appliance/cairn/daemon/plan"
	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/site"
)

func TestSitePlan(t *testing.T) {
	code, out, _ := cairn(t, "site", "plan", "../../examples/site")
	if code != exitChanges || !strings.Contains(out, "+ host web-01: add") || !strings.Contains(out, "Plan: 3 to add") {
		t.Fatalf("plan against no state: exit %d\n%s", code, out)
	}

	// A state that recorded the example site as applied: no changes.
	path := filepath.Join(t.TempDir(), "state.db")
	st, err := state.Open(path, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := site.Load("../../examples/site")
	if err != nil {
		t.Fatal(err)
	}
	desired, err := plan.Desire(s)
	if err != nil {
		t.Fatal(err)
	}
	err = st.Update(context.Background(), func(tx state.Tx) error {
		for name, d := range desired {
			h := state.Host{Name: name, MAC: d.Host.MAC.String(), Phase: state.Ready, Provision: d.Host.Provision, Spec: d.Spec, Containers: d.Containers}
			if err := tx.PutHost(h); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
	code, out, _ = cairn(t, "site", "plan", "../../examples/site", "--state", path)
	if code != exitOK || !strings.Contains(out, "No changes") {
		t.Fatalf("plan against its own state: exit %d\n%s", code, out)
	}
	code, _, _ = cairn(t, "site", "plan", "../../site/testdata/types", "--state", path)
	if code != exitFailed {
		t.Errorf("plan of an invalid site: exit %d, want %d", code, exitFailed)
	}
	if code, _, _ := cairn(t, "site", "plan", "../../examples/site", "--state", filepath.Join(t.TempDir(), "x", "missing.db")); code != exitFailed {
		t.Errorf("plan with a missing state file: exit %d, want %d", code, exitFailed)
	}
}

// TestSitePlanAgainstDaemon plans the example site against a daemon's API that recorded it.
func TestSitePlanAgainstDaemon(t *testing.T) {
	st := state.NewMemory(0)
	s, err := site.Load("../../examples/site")
	if err != nil {
		t.Fatal(err)
	}
	desired, _ := plan.Desire(s)
	_ = st.Update(context.Background(), func(tx state.Tx) error {
		for name, d := range desired {
			if name == "web-02" {
				continue // not applied yet
			}
			_ = tx.PutHost(state.Host{Name: name, MAC: d.Host.MAC.String(), Phase: state.Ready, Provision: d.Host.Provision, Spec: d.Spec, Containers: d.Containers})
		}
		return nil
	})
	h, err := api.New(api.Config{Store: st, Current: func() api.Current { return api.Current{Site: s} }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	code, out, errOut := cairn(t, "site", "plan", "../../examples/site", "--server", srv.URL)
	if code != exitChanges || !strings.Contains(out, "+ host web-02: add") || strings.Contains(out, "web-01") {
		t.Errorf("plan against the daemon: exit %d\n%s%s", code, out, errOut)
	}
}
