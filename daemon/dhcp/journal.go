package dhcp

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cairn-appliance/cairn/daemon/state"
)

// journal writes the pool's changes to the state store in batches: every change made while
// the previous batch was being committed goes into the next one, so that one commit (one
// fsync of the state file) serves many clients, and a lease is on disk before its ACK leaves.
// Changes are added under the server's lock, in the order the pool made them.
type journal struct {
	store state.Store
	mu    sync.Mutex
	cur   *batch
	wake  chan struct{}
}

// batch is a set of writes committed together; done is closed once they are (err says how).
type batch struct {
	writes []write
	done   chan struct{}
	err    error
}

func newJournal(store state.Store) *journal {
	return &journal{store: store, cur: &batch{done: make(chan struct{})}, wake: make(chan struct{}, 1)}
}

// add queues writes and returns the batch they will be committed in; nil when there are none.
func (j *journal) add(writes []write) *batch {
	if len(writes) == 0 {
		return nil
	}
	j.mu.Lock()
	b := j.cur
	b.writes = append(b.writes, writes...)
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
	return b
}

// commit writes the pending batch, if any, in one transaction.
func (j *journal) commit(ctx context.Context) {
	j.mu.Lock()
	b := j.cur
	if len(b.writes) == 0 {
		j.mu.Unlock()
		return
	}
	j.cur = &batch{done: make(chan struct{})}
	j.mu.Unlock()
	b.err = j.store.Update(ctx, func(tx state.Tx) error {
		for _, w := range b.writes {
			var err error
			if w.put != nil {
				err = tx.PutLease(*w.put)
			} else {
				err = tx.DeleteLease(w.del)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if b.err != nil {
		b.err = fmt.Errorf("writing %d lease changes to the state: %w", len(b.writes), b.err)
	}
	close(b.done)
}

// run commits batches as changes come, until ctx ends; then it commits what is left.
func (j *journal) run(ctx context.Context) {
	for {
		select {
		case <-j.wake:
			// A stop does not cancel a commit under way: its clients wait for it.
			j.commit(context.WithoutCancel(ctx))
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			j.commit(fctx)
			cancel()
			return
		}
	}
}
