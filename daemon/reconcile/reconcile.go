// Package reconcile applies a site to the daemon's state: it plans the site against what was
// recorded, then applies the plan in transactions of whole host changes, and records the
// generation as applied only when every host is done. A daemon killed at any point restarts,
// plans again, finds only what is left, and finishes; nothing is applied twice and nothing
// half. A discovered machine whose MAC a new site host names becomes that host.
//
// It changes the state only: it records what each host should be (phase pending, the spec
// and containers wanted, a provision counter raised) and acts on no machine itself.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cairn-appliance/cairn/daemon/plan"
	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/site"
)

// stepsPerTx bounds how many host changes share one transaction: each is applied whole or
// not at all, and a first apply of a large site does not pay one disk sync per host.
var stepsPerTx = 64

// ErrRefused is returned (wrapped) when the plan is refused (see plan.Plan.Refused).
var ErrRefused = errors.New("reconcile: plan refused")

// Attempt records that generation gen (the site with this fingerprint) is being applied, or,
// with a non-nil cause, that it could not be (an invalid site): the last good site stays.
func Attempt(ctx context.Context, st state.Store, gen int64, fingerprint string, cause error) error {
	return st.Update(ctx, func(tx state.Tx) error { return attempt(tx, gen, fingerprint, cause) })
}

func attempt(tx state.Tx, gen int64, fingerprint string, cause error) error {
	g, err := tx.Generation()
	if err != nil {
		return err
	}
	g.Attempted, g.AttemptedFingerprint, g.AttemptedAt, g.Error = gen, fingerprint, now(), ""
	if cause != nil {
		g.Error = cause.Error()
		if err := tx.Append(state.Event{Kind: "site.rejected", Message: fmt.Sprintf("generation %d not applied: %v", gen, cause)}); err != nil {
			return err
		}
	}
	return tx.SetGeneration(g)
}

// applied records generation gen, which plan p brought, as applied.
func applied(tx state.Tx, gen int64, fingerprint string, p *plan.Plan) error {
	g, err := tx.Generation()
	if err != nil {
		return err
	}
	g.Applied, g.AppliedFingerprint, g.AppliedAt = gen, fingerprint, now()
	if err := tx.SetGeneration(g); err != nil {
		return err
	}
	if p.Empty() {
		return nil
	}
	return tx.Append(state.Event{Kind: "site.applied", Message: fmt.Sprintf("generation %d applied: %d change(s)", gen, len(p.Items))})
}

// Apply makes the state what site s asks and records generation gen as applied. It returns
// the plan it carried out.
func Apply(ctx context.Context, st state.Store, s *site.Site, gen int64, fingerprint string) (*plan.Plan, error) {
	return NewApplier(st).Apply(ctx, s, gen, fingerprint)
}

// An Applier applies one site after another to a store, as the daemon does after each edit,
// encoding again only the hosts that changed since the last site (see plan.Memo).
type Applier struct {
	st   state.Store
	memo plan.Memo
	// Progress, when set, is told after each transaction how many of the plan's items are
	// applied.
	Progress func(done, total int)
	// Images, when set, resolves each container image to the digest the store holds (see
	// plan.Memo.Resolve): a site with an image the store lacks is not applied, and its error
	// names the image key's file, line and column.
	Images func(site.Image) (string, error)
}

// NewApplier returns an Applier of the store st.
func NewApplier(st state.Store) *Applier { return &Applier{st: st} }

// Apply makes the state what site s asks and records generation gen as applied. It returns
// the plan it carried out.
func (a *Applier) Apply(ctx context.Context, s *site.Site, gen int64, fingerprint string) (*plan.Plan, error) {
	st := a.st
	p, desired, recorded, err := a.plan(ctx, s)
	if err != nil {
		return nil, err
	}
	if p.Refused != "" {
		err := fmt.Errorf("%w: %s", ErrRefused, p.Refused)
		return p, errors.Join(err, Attempt(ctx, st, gen, fingerprint, err))
	}
	byMAC := plan.Discovered(recorded) // discovered machines, by MAC, to adopt
	// The first transaction also records the attempt, the last one the generation applied:
	// an edit of one host is one transaction, one disk sync.
	batches := batch(p.Items)
	done := 0
	for i, batch := range batches {
		if err := ctx.Err(); err != nil {
			return p, err
		}
		err := st.Update(ctx, func(tx state.Tx) error {
			if i == 0 {
				if err := attempt(tx, gen, fingerprint, nil); err != nil {
					return err
				}
			}
			for _, it := range batch {
				if err := step(tx, it, desired[it.Host], byMAC, gen); err != nil {
					return fmt.Errorf("applying %s to host %s: %w", it.Action, it.Host, err)
				}
			}
			if i == len(batches)-1 {
				return applied(tx, gen, fingerprint, p)
			}
			return nil
		})
		if err != nil {
			return p, err
		}
		if done += len(batch); a.Progress != nil {
			a.Progress(done, len(p.Items))
		}
	}
	return p, nil
}

// batch splits a plan's items into transactions of about stepsPerTx items, never splitting
// one host's items: a re-provision also writes the new spec, so a daemon killed between a
// host's re-provision and its spec change would find nothing left to change, and the spec
// change would go unrecorded. There is always one batch, if empty.
func batch(items []plan.Item) [][]plan.Item {
	batches := [][]plan.Item{nil}
	for i, it := range items {
		cur := &batches[len(batches)-1]
		if len(*cur) >= stepsPerTx && it.Host != items[i-1].Host {
			batches = append(batches, nil)
			cur = &batches[len(batches)-1]
		}
		*cur = append(*cur, it)
	}
	return batches
}

// Plan returns what applying s would change, changing nothing.
func (a *Applier) Plan(ctx context.Context, s *site.Site) (*plan.Plan, error) {
	p, _, _, err := a.plan(ctx, s)
	return p, err
}

func (a *Applier) plan(ctx context.Context, s *site.Site) (*plan.Plan, map[string]plan.Desired, []state.Host, error) {
	var recorded []state.Host
	if err := a.st.View(ctx, func(tx state.Tx) (err error) {
		recorded, err = tx.Hosts()
		return err
	}); err != nil {
		return nil, nil, nil, err
	}
	a.memo.Resolve = a.Images
	desired, err := a.memo.Desire(s)
	if err != nil {
		return nil, nil, nil, err
	}
	return plan.Diff(s, desired, recorded), desired, recorded, nil
}

// step applies one item of a plan inside one transaction.
func step(tx state.Tx, it plan.Item, d plan.Desired, discovered map[site.MAC]string, gen int64) error {
	h, _, err := tx.Host(it.Host)
	if err != nil {
		return err
	}
	event := state.Event{Host: it.Host, Kind: "host." + string(it.Action)}
	switch it.Action {
	case plan.Add:
		h = state.Host{Name: it.Host, Phase: state.Pending, Provision: d.Host.Provision, Spec: d.Spec, Containers: d.Containers, Digests: d.Digests}
		if len(d.Containers) > 0 {
			h.ContainersGeneration = 1
		}
		if old, ok := discovered[d.Host.MAC]; ok {
			// The machine keeps what its agent reported of it.
			rec, found, err := tx.Host(old)
			if err != nil {
				return err
			}
			if found {
				h.Inventory = rec.Inventory
			}
			if old != it.Host {
				if err := tx.DeleteHost(old); err != nil {
					return err
				}
			}
		}
		event.Message = "added to the site; waiting to be provisioned"
	case plan.Change:
		h.Spec = d.Spec
		event.Message = "spec changed"
	case plan.Reprovision:
		h.Phase, h.Reason, h.Progress, h.Failures = state.Pending, "", 0, 0
		h.Provision, h.Spec = d.Host.Provision, d.Spec
		h.HostTokenHash, h.ProvisionTokenHash = "", "" // a new disk gets new tokens
		event.Message = fmt.Sprintf("re-provision requested (provision %d): the disk will be written again", h.Provision)
	case plan.Containers:
		h.Containers, h.Digests = d.Containers, d.Digests
		h.ContainersGeneration++
		if h.Phase == state.Ready {
			h.Phase = state.Deploying
		}
		event.Message = fmt.Sprintf("containers changed: generation %d", h.ContainersGeneration)
	case plan.Remove:
		event.Message = "removed from the site"
		if err := tx.DeleteHost(it.Host); err != nil {
			return err
		}
		return tx.Append(event)
	default:
		return fmt.Errorf("unknown action %q", it.Action)
	}
	if d.Host != nil {
		h.MAC = d.Host.MAC.String()
		h.IP = ""
		if d.Host.IP.IsValid() {
			h.IP = d.Host.IP.String()
		}
	}
	h.Updated = now()
	if err := tx.PutHost(h); err != nil {
		return err
	}
	event.Message += fmt.Sprintf(" (site generation %d)", gen)
	return tx.Append(event)
}

// now is the clock; tests that compare states replace it.
var now = func() time.Time { return time.Now().UTC() }
