package token

import (
	"context"
	"errors"
	"testing"

	"github.com/cairn-appliance/cairn/daemon/state"
)

func seed(t *testing.T) state.Store {
	t.Helper()
	st := state.NewMemory(0)
	err := st.Update(context.Background(), func(tx state.Tx) error {
		return tx.PutHost(state.Host{Name: "web-01", MAC: "52:54:00:20:00:11", Phase: state.Pending})
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func host(t *testing.T, st state.Store) (h state.Host, events []state.Event) {
	t.Helper()
	err := st.View(context.Background(), func(tx state.Tx) (err error) {
		if h, _, err = tx.Host("web-01"); err != nil {
			return err
		}
		events, err = tx.Latest(10, "web-01")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return h, events
}

func TestEphemeralIssuesNoProvisioningToken(t *testing.T) {
	st := seed(t)
	tok, err := (&Issuer{Store: st, Ephemeral: true}).Provisioning(context.Background(), "web-01")
	if !errors.Is(err, ErrEphemeral) || tok != "" {
		t.Fatalf("Provisioning on an ephemeral appliance = %q, %v, want no token and ErrEphemeral", tok, err)
	}
	h, events := host(t, st)
	if h.ProvisionTokenHash != "" {
		t.Errorf("an ephemeral appliance recorded a token hash %q", h.ProvisionTokenHash)
	}
	if len(events) != 1 || events[0].Kind != "host.provision_refused" {
		t.Errorf("events = %+v, want one host.provision_refused", events)
	}
}

// TestProvisioningToken is the control: with a data disk (or allow_ephemeral) the same call
// hands out a token whose hash, only, is kept; a new attempt's token replaces it.
func TestProvisioningToken(t *testing.T) {
	st := seed(t)
	iss := &Issuer{Store: st}
	tok, err := iss.Provisioning(context.Background(), "web-01")
	if err != nil || len(tok) != 43 {
		t.Fatalf("Provisioning = %q, %v, want a 43-character token", tok, err)
	}
	h, _ := host(t, st)
	if h.ProvisionTokenHash != Hash(tok) || h.ProvisionTokenHash == tok {
		t.Errorf("kept %q, want the token's hash, not the token", h.ProvisionTokenHash)
	}
	if !Matches(h.ProvisionTokenHash, tok) || Matches(h.ProvisionTokenHash, tok+"x") || Matches(h.ProvisionTokenHash, "") || Matches("", tok) {
		t.Error("Matches accepts a wrong token or refuses the right one")
	}
	again, err := iss.Provisioning(context.Background(), "web-01")
	if err != nil || again == tok {
		t.Fatalf("a second attempt's token = %q, %v, want a new one", again, err)
	}
	if h, _ := host(t, st); Matches(h.ProvisionTokenHash, tok) || !Matches(h.ProvisionTokenHash, again) {
		t.Error("the new attempt's token did not replace the old one")
	}
	if _, err := iss.Provisioning(context.Background(), "nobody"); err == nil {
		t.Error("a token for a host that is not in the state")
	}
}
