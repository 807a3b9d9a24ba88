package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

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
