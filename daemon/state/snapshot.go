package state

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
)

// Snapshot is a bbolt state as of one commit, held in a read transaction: what a backup copies
// while the daemon goes on writing. Close it soon: bbolt cannot grow its file's mapping while
// a read transaction is open, so a writer that needs more room waits until the snapshot is
// closed (and one in the goroutine that holds the snapshot waits for ever).
type Snapshot struct {
	s    *Bolt
	tx   *boltTx
	done bool
}

// Snapshot begins a snapshot of the state as of the last commit. It works on a store opened
// read-only too.
func (s *Bolt) Snapshot(ctx context.Context) (*Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	tx, err := s.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("state: beginning a snapshot: %w", err)
	}
	return &Snapshot{s: s, tx: &boltTx{tx: tx, retention: s.retention, store: s, cache: s.cacheAt(tx.ID())}}, nil
}

// View runs fn on the snapshot: it reads what WriteTo writes.
func (sn *Snapshot) View(fn func(Tx) error) error { return fn(sn.tx) }

// Size is how many bytes WriteTo writes.
func (sn *Snapshot) Size() int64 { return sn.tx.tx.Size() }

// WriteTo writes the state file as of the snapshot: a file that Open opens, holding exactly
// what View reads. The same file, unchanged, gives the same bytes.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) { return sn.tx.tx.WriteTo(w) }

// Close ends the snapshot. It may be called more than once.
func (sn *Snapshot) Close() error {
	if sn.done {
		return nil
	}
	sn.done = true
	return sn.tx.tx.Rollback()
}

// Count says how many hosts and events the snapshot holds and the Seq of the newest event,
// without decoding them.
func (sn *Snapshot) Count() (hosts, events int, last uint64) {
	tx := sn.tx.tx
	c := tx.Bucket(bucketHosts).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		hosts++
	}
	c = tx.Bucket(bucketEvents).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		events++
		last = binary.BigEndian.Uint64(k)
	}
	return hosts, events, last
}
