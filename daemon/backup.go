package daemon

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/cairn-appliance/cairn/daemon/api"
	"github.com/cairn-appliance/cairn/daemon/backup"
	"github.com/cairn-appliance/cairn/daemon/state"
)

// backupWait bounds how long a backup waits, while edits keep coming, for a copy of the site
// that is the one the state last loaded.
const backupWait = time.Minute

// backup is the API's Config.Backup: an archive (package daemon/backup) of the state, the
// site and the upper store, the state and the site as one load of the site left them.
func (c *converger) backup(st *state.Bolt, upper, spoolDir, version string) func(context.Context) (api.Archive, error) {
	return func(ctx context.Context) (api.Archive, error) {
		snap, err := c.snapshot(ctx, st)
		if err != nil {
			return nil, err
		}
		// The archive goes to a reader of any speed: copy the state out of its read
		// transaction first, which would hold up the converger's writes.
		if err := snap.Detach(spoolDir); err != nil {
			_ = snap.Close()
			return nil, err
		}
		return &archive{snap: snap, upper: upper, version: version}, nil
	}
}

// snapshot takes a snapshot of the state and a copy of the site between two loads. When the
// site copied is not the one the state last loaded (an edit not loaded yet), it waits for the
// next load and takes them again, for up to backupWait.
func (c *converger) snapshot(ctx context.Context, st *state.Bolt) (*backup.Snapshot, error) {
	deadline := time.NewTimer(backupWait)
	defer deadline.Stop()
	for {
		next := c.nextLoad()
		c.between.Lock()
		snap, err := backup.Take(ctx, st, c.watch.Dir())
		c.between.Unlock()
		if err != nil {
			return nil, err
		}
		if snap.Matches() {
			return snap, nil
		}
		_ = snap.Close()
		c.log.Info("backup: the site has an edit not loaded yet; taking it again after the next load")
		select {
		case <-next:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			return nil, fmt.Errorf("the site directory kept changing for %v: no copy of it was the site the daemon had last loaded; try again once edits settle", backupWait)
		}
	}
}

// nextLoad returns a channel closed when the next load of the site ends.
func (c *converger) nextLoad() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loaded == nil {
		c.loaded = make(chan struct{})
	}
	return c.loaded
}

// loadDone tells those waiting in nextLoad that a load ended.
func (c *converger) loadDone() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loaded != nil {
		close(c.loaded)
		c.loaded = nil
	}
}

// archive is an api.Archive: a snapshot written with the upper store.
type archive struct {
	snap           *backup.Snapshot
	upper, version string
}

func (a *archive) Write(ctx context.Context, w io.Writer) error {
	_, err := a.snap.Write(ctx, w, a.upper, a.version)
	return err
}

func (a *archive) Close() error { return a.snap.Close() }
