package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cairn-appliance/cairn/daemon/state"
)

// Snapshot is the state as of one commit and a copy of the site taken with it: what an
// archive holds but the upper store, whose files are read as they are written (only cairn
// writes them, whole, and never changes one).
type Snapshot struct {
	Site    *Site   // nil when there is no site directory to copy
	Summary Summary // of the state

	fingerprint string
	state       *state.Snapshot // until Detach
	spool       *os.File        // the state as Detach copied it out
	size        int64
}

// Take begins a snapshot of the state st and copies the site directory siteDir ("" for none)
// into memory. Call it between two loads of the site, so that the state is what one load left
// and Matches tells whether the site copied is the one it loaded; once Take returns, the site
// may be loaded again. Close the snapshot when done.
func Take(ctx context.Context, st *state.Bolt, siteDir string) (_ *Snapshot, err error) {
	sn, err := st.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{state: sn, size: sn.Size()}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	if err := s.summarise(); err != nil {
		return nil, fmt.Errorf("reading the state: %w", err)
	}
	if siteDir != "" {
		if s.Site, err = ReadSite(siteDir); err != nil {
			return nil, err
		}
		s.fingerprint = s.Site.Fingerprint()
	}
	return s, nil
}

// summarise counts what the state holds.
func (s *Snapshot) summarise() error {
	var g state.Generation
	if err := s.state.View(func(tx state.Tx) (err error) { g, err = tx.Generation(); return err }); err != nil {
		return err
	}
	s.Summary = Summary{Generation: g}
	s.Summary.Hosts, s.Summary.Events, s.Summary.LastEvent = s.state.Count()
	return nil
}

// Matches reports whether the site copied is the one the state last loaded (attempted): its
// fingerprint is the one the state recorded. A daemon restored from a snapshot that matches
// finds nothing to do that the source had not done.
func (s *Snapshot) Matches() bool {
	return s.Site != nil && s.fingerprint == s.Summary.Generation.AttemptedFingerprint
}

// Detach copies the state out of its read transaction into a temporary file in dir (removed
// from the directory at once, so nothing is left behind) and ends the transaction: writing an
// archive to a slow reader then holds up none of the daemon's writes.
func (s *Snapshot) Detach(dir string) error {
	if s.state == nil {
		return nil
	}
	f, err := os.CreateTemp(dir, ".cairn-backup-state-*")
	if err != nil {
		return fmt.Errorf("copying the state snapshot: %w", err)
	}
	_ = os.Remove(f.Name())
	n, err := s.state.WriteTo(f)
	if err == nil && n != s.size {
		err = fmt.Errorf("%d bytes written, %d expected", n, s.size)
	}
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("copying the state snapshot: %w", err)
	}
	s.spool = f
	err = s.state.Close()
	s.state = nil
	return err
}

// Write writes the archive of the snapshot and of the upper store at storeDir ("", or a
// missing directory, for none) to w, and returns its manifest. version is cairn's. The same
// state file, site and store give the same bytes. A Snapshot is written once.
func (s *Snapshot) Write(ctx context.Context, w io.Writer, storeDir, version string) (*Manifest, error) {
	if s.state == nil && s.spool == nil {
		return nil, errors.New("backup: the snapshot is closed")
	}
	items := siteItems(s.Site)
	items = append(items, item{path: StateFile, size: s.size, mode: modeState, write: s.writeState})
	store, err := storeItems(storeDir)
	if err != nil {
		return nil, err
	}
	items = append(items, store...)
	m := &Manifest{Format: FormatVersion, Cairn: version, State: s.Summary, SiteFingerprint: s.fingerprint}
	if err := writeArchive(ctx, w, items, m); err != nil {
		return nil, err
	}
	return m, nil
}

func (s *Snapshot) writeState(w io.Writer) (int64, error) {
	if s.spool != nil {
		return io.Copy(w, io.NewSectionReader(s.spool, 0, s.size))
	}
	return s.state.WriteTo(w)
}

// Close ends the snapshot's transaction and drops its copy of the state.
func (s *Snapshot) Close() error {
	var errs []error
	if s.state != nil {
		errs = append(errs, s.state.Close())
		s.state = nil
	}
	if s.spool != nil {
		errs = append(errs, s.spool.Close())
		s.spool = nil
	}
	return errors.Join(errs...)
}

// FromFiles writes the archive of a stopped appliance's files to w, opening the state file of
// t read-only: when no daemon holds it, there is no load to come between. version is cairn's.
func FromFiles(ctx context.Context, w io.Writer, t Target, version string) (*Manifest, error) {
	st, err := state.Open(t.State, state.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	s, err := Take(ctx, st, t.Site)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.Write(ctx, w, t.Store, version)
}
