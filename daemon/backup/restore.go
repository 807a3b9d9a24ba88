package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cairn-appliance/cairn/daemon/state"
)

// ErrInUse is returned (wrapped) when another process holds the state file: the daemon runs.
var ErrInUse = errors.New("backup: the state file is in use")

// ErrNotEmpty is returned (wrapped) when the destination already holds data and Restore was
// not told to replace it.
var ErrNotEmpty = errors.New("backup: the destination holds data")

// Target is where Restore puts an archive: the paths of the daemon's configuration.
type Target struct {
	State string // the state file (state in daemon.toml)
	Site  string // the site directory (site_dir)
	Store string // the upper store (upper); "" when the appliance has none
}

// Restored says what Restore put in place.
type Restored struct {
	Manifest *Manifest
	Summary  Summary // read back from the state file put in place
}

// Restore reads the archive r whole into temporary directories beside the destinations of t,
// checks every entry against the manifest, and only then moves the state file, the site and
// the upper store into place, replacing what was there (what the archive lacks ends up
// absent). An archive that fails a check, or a failure on the way, leaves the destinations as
// they were. It refuses, with ErrInUse, while another process holds the state file, and, with
// ErrNotEmpty, to replace a state file, a site or an upper store that holds anything unless
// force is set.
//
// The state file is the archive's, migrated when an older cairn wrote it (as the daemon would
// at start). Files are written with fixed modes (0600 for the state, 0644 and 0755 for the
// rest) and belong to the user restoring.
func Restore(ctx context.Context, r io.Reader, t Target, force bool) (res *Restored, err error) {
	if t.State == "" || t.Site == "" {
		return nil, errors.New("restore: the daemon configuration gives no state file or no site_dir; give both")
	}
	unlock, err := lockState(t.State)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if !force {
		if err := refuseData(t); err != nil {
			return nil, err
		}
	}

	parts := []*part{
		{name: "site", dest: t.Site, prefix: SiteDir},
		{name: "store", dest: t.Store, prefix: StoreDir},
		{name: "state", dest: t.State, prefix: StateFile}, // last: with it in place, all is
	}
	stages := map[string]string{} // destination parent → staging directory
	defer func() {
		for _, dir := range stages {
			_ = os.RemoveAll(dir)
		}
	}()
	for _, p := range parts {
		if p.dest == "" {
			continue
		}
		parent := filepath.Dir(p.dest)
		if stages[parent] == "" {
			if err := os.MkdirAll(parent, modeDir); err != nil {
				return nil, fmt.Errorf("restore: %w", err)
			}
			dir, err := os.MkdirTemp(parent, ".cairn-restore-*")
			if err != nil {
				return nil, fmt.Errorf("restore: %w", err)
			}
			stages[parent] = dir
		}
		p.staged = filepath.Join(stages[parent], "new-"+p.name)
		p.old = filepath.Join(stages[parent], "old-"+p.name)
	}

	m, err := readArchive(r, func(name string, content io.Reader) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return stage(parts, name, content)
	})
	if err != nil {
		return nil, err
	}
	st := parts[2]
	if !st.present {
		return nil, fmt.Errorf("%w:\n  the archive holds no %s", ErrDamaged, StateFile)
	}
	sum, err := summarise(ctx, st.staged)
	if err != nil {
		return nil, err
	}
	if got, want := sum, m.State; got.Hosts != want.Hosts || got.Events != want.Events || got.LastEvent != want.LastEvent ||
		got.Generation.Applied != want.Generation.Applied || got.Generation.Attempted != want.Generation.Attempted {
		return nil, fmt.Errorf("%w:\n  %s holds %d hosts, %d events up to %d, generation %d (%d attempted); the manifest says %d hosts, %d events up to %d, generation %d (%d attempted)",
			ErrDamaged, StateFile, got.Hosts, got.Events, got.LastEvent, got.Generation.Applied, got.Generation.Attempted,
			want.Hosts, want.Events, want.LastEvent, want.Generation.Applied, want.Generation.Attempted)
	}
	for _, dir := range stages {
		if err := syncTree(dir); err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
	}
	if err := install(parts); err != nil {
		return nil, err
	}
	return &Restored{Manifest: m, Summary: sum}, nil
}

// part is one of what an archive restores: the site, the upper store or the state file.
type part struct {
	name    string
	dest    string // "" for an upper store the appliance does not have
	prefix  string // its entries: the file name, or the directory's prefix
	staged  string // where it is read to
	old     string // where what dest held goes until the new one is in place
	present bool   // the archive holds it
	moved   bool   // dest went to old
	placed  bool   // staged went to dest
}

// stage writes one entry of the archive under its part's staging path.
func stage(parts []*part, name string, content io.Reader) error {
	for _, p := range parts {
		if name != p.prefix && !strings.HasPrefix(name, p.prefix) {
			continue
		}
		if p.dest == "" {
			return fmt.Errorf("the archive holds an upper store (%s…) and the daemon configuration sets no upper: set upper in daemon.toml (for example /var/lib/cairn/upper) and restore again", StoreDir)
		}
		p.present = true
		dst := p.staged
		if rel := strings.TrimPrefix(name, p.prefix); rel != "" {
			dst = filepath.Join(p.staged, filepath.FromSlash(rel))
		}
		if content == nil {
			return os.MkdirAll(dst, modeDir)
		}
		if err := os.MkdirAll(filepath.Dir(dst), modeDir); err != nil {
			return err
		}
		mode := os.FileMode(modeFile)
		if name == StateFile {
			mode = modeState
		}
		return writeFile(dst, content, mode)
	}
	return fmt.Errorf("entry %s belongs nowhere", name) // checkName let it through: a bug
}

// writeFile writes content to a new file at path and syncs it.
func writeFile(path string, content io.Reader, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode) //nolint:gosec // under a staging directory of ours
	if err != nil {
		return err
	}
	_, err = io.Copy(f, content)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// install moves each part's old content aside and its new one into place, then syncs the
// directories; on a failure it puts back what it moved.
func install(parts []*part) (err error) {
	defer func() {
		if err == nil {
			return
		}
		for i := len(parts) - 1; i >= 0; i-- {
			p := parts[i]
			if p.placed {
				_ = os.Rename(p.dest, p.staged)
			}
			if p.moved {
				_ = os.Rename(p.old, p.dest)
			}
		}
		err = fmt.Errorf("restore: %w; what was there is back in place", err)
	}()
	for _, p := range parts {
		if p.dest == "" {
			continue
		}
		if _, err := os.Lstat(p.dest); err == nil {
			if err := os.Rename(p.dest, p.old); err != nil {
				return err
			}
			p.moved = true
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if p.present {
			if err := os.Rename(p.staged, p.dest); err != nil {
				return err
			}
			p.placed = true
		}
		if err := syncDir(filepath.Dir(p.dest)); err != nil {
			return err
		}
	}
	return nil
}

// lockState takes the lock bbolt takes on the state file, if there is one, so that the
// daemon neither runs now nor starts while the restore goes on.
func lockState(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0) //nolint:gosec // the configured state file
	if errors.Is(err, fs.ErrNotExist) {
		return func() {}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil { //nolint:gosec // a file descriptor fits an int
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: another process holds %s (is cairn daemon running? stop it first with systemctl stop cairn, restore, then start it)", ErrInUse, path)
		}
		return nil, fmt.Errorf("restore: locking %s: %w", path, err)
	}
	return func() { _ = f.Close() }, nil
}

// refuseData refuses a destination that holds a state file, a site or an upper store.
func refuseData(t Target) error {
	if _, err := os.Lstat(t.State); err == nil {
		return fmt.Errorf("%w: %s is a state file already; restoring replaces it (and the site and upper store): give --force to do so", ErrNotEmpty, t.State)
	}
	for _, dir := range []string{t.Site, t.Store} {
		if dir == "" {
			continue
		}
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("restore: %w", err)
		}
		if len(entries) > 0 {
			return fmt.Errorf("%w: %s holds %d entries already; restoring replaces it (and the state file): give --force to do so", ErrNotEmpty, dir, len(entries))
		}
	}
	return nil
}

// summarise opens a state file as the daemon would and counts what it holds.
func summarise(ctx context.Context, path string) (Summary, error) {
	st, err := state.Open(path, state.Options{})
	if err != nil {
		return Summary{}, fmt.Errorf("%w:\n  %s: %v", ErrDamaged, StateFile, err)
	}
	defer st.Close()
	sn, err := st.Snapshot(ctx)
	if err != nil {
		return Summary{}, err
	}
	defer sn.Close()
	s := &Snapshot{state: sn}
	if err := s.summarise(); err != nil {
		return Summary{}, fmt.Errorf("%w:\n  %s: %v", ErrDamaged, StateFile, err)
	}
	return s.Summary, nil
}

// syncTree syncs every directory under dir, dir included, so that the files written into
// them are found after a crash.
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return syncDir(p)
	})
}

func syncDir(dir string) error {
	f, err := os.Open(dir) //nolint:gosec // a directory of ours
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}
