package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// decodeAll reads every host of b from the file itself, past the host cache.
func decodeAll(t *testing.T, b *Bolt) []Host {
	t.Helper()
	var hosts []Host
	err := b.db.View(func(tx *bolt.Tx) error {
		var err error
		hosts, err = (&boltTx{tx: tx, store: b, writable: true}).Hosts() // writable: not kept
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return hosts
}

// TestHostCacheFollowsCommits runs random transactions (puts, deletes, reads of their own
// writes, and failures that roll back) against the bbolt store and an in-memory one, and
// checks after each that the cached hosts, the hosts decoded from the file and the memory
// store's hosts are the same.
func TestHostCacheFollowsCommits(t *testing.T) {
	b, err := Open(filepath.Join(t.TempDir(), "state.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	m := NewMemory(0)
	rng := rand.New(rand.NewPCG(1, 2))
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	errRollback := errors.New("roll back")
	read := false // whether a read has cached the hosts yet
	for round := range 300 {
		var seen []string // what reads inside the transaction saw; bolt's, then memory's
		ops := make([]func(Tx) error, 1+rng.IntN(8))
		for i := range ops {
			name := fmt.Sprintf("h%02d", rng.IntN(40))
			switch k := rng.IntN(10); {
			case k < 6:
				h := Host{Name: name, MAC: "52:54:00:00:00:01", Phase: Phases[rng.IntN(len(Phases))], Progress: rng.IntN(100),
					Spec: json.RawMessage(fmt.Sprintf(`{"round":%d}`, round)), Updated: at.Add(time.Duration(round) * time.Second)}
				ops[i] = func(tx Tx) error { return tx.PutHost(h) }
			case k < 8:
				ops[i] = func(tx Tx) error { return tx.DeleteHost(name) }
			case k < 9:
				ops[i] = func(tx Tx) error { // a read of the transaction's own writes
					h, ok, err := tx.Host(name)
					seen = append(seen, fmt.Sprint(ok, names([]Host{h})))
					return err
				}
			default:
				ops[i] = func(tx Tx) error {
					hosts, err := tx.Hosts()
					seen = append(seen, fmt.Sprint(names(hosts)))
					return err
				}
			}
		}
		fail := rng.IntN(5) == 0
		run := func(tx Tx) error {
			for _, op := range ops {
				if err := op(tx); err != nil {
					return err
				}
			}
			if fail {
				return errRollback
			}
			return nil
		}
		errB := b.Update(ctx, run)
		fromBolt := seen
		seen = nil
		errM := m.Update(ctx, run)
		if (errB == nil) != (errM == nil) || (errB != nil && !errors.Is(errB, errRollback)) {
			t.Fatalf("round %d: bolt says %v, memory says %v", round, errB, errM)
		}
		if !reflect.DeepEqual(fromBolt, seen) {
			t.Fatalf("round %d: reads inside the transaction differ:\nbolt   %q\nmemory %q", round, fromBolt, seen)
		}
		if rng.IntN(3) == 0 {
			continue // let several commits pass with no read between them
		}
		// Every commit since the last read derived the cache from it: it is current.
		var hit bool
		_ = b.db.View(func(tx *bolt.Tx) error { hit = b.cacheAt(tx.ID()) != nil; return nil })
		if read && !hit {
			t.Fatalf("round %d: the host cache fell behind the commits", round)
		}
		var cached, want []Host
		if err := b.View(ctx, func(tx Tx) (err error) { cached, err = tx.Hosts(); return err }); err != nil {
			t.Fatal(err)
		}
		if err := m.View(ctx, func(tx Tx) (err error) { want, err = tx.Hosts(); return err }); err != nil {
			t.Fatal(err)
		}
		read = true
		decoded := decodeAll(t, b)
		if !sameHosts(cached, decoded) || !sameHosts(cached, want) {
			t.Fatalf("round %d: cached %v\ndecoded %v\nmemory %v", round, names(cached), names(decoded), names(want))
		}
	}
	if b.hosts == nil {
		t.Fatal("the store never cached its hosts")
	}
}

func sameHosts(a, b []Host) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if !json.Valid(x.Spec) || !json.Valid(y.Spec) {
			return false
		}
		x.Spec, y.Spec = compact(x.Spec), compact(y.Spec)
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

func compact(r json.RawMessage) json.RawMessage {
	var v any
	_ = json.Unmarshal(r, &v)
	out, _ := json.Marshal(v)
	return out
}

func names(hs []Host) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = fmt.Sprintf("%s/%s/%d/%s", h.Name, h.Phase, h.Progress, h.Spec)
	}
	return out
}
