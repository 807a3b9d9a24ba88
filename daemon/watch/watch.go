// Package watch tells the daemon when the site directory has changed: it watches the
// directory, its sub-directories and its parent with fsnotify, waits for a burst of events to
// settle (a quiet period, bounded by a maximum wait), and reports a change only when the
// content of the site really differs from what it last reported. So an editor's atomic save,
// a `git checkout`, a swapped `..data` symlink or a directory removed and created again each
// give one reload, and temp files that come and go give none. A periodic rescan catches
// changes on filesystems that send no events, and an event-queue overflow forces one.
//
// It reads the directory to fingerprint it; it does not parse anything (package site does).
package watch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Config says what to watch and how patiently.
type Config struct {
	Dir     string        // the site directory
	Quiet   time.Duration // a burst ends after this long without events; default 100ms
	MaxWait time.Duration // a burst never delays a reload longer than this; default 3s
	Resync  time.Duration // rescan this often even without events; default 1m, <0 never
}

// Change is one reason to reload.
type Change struct {
	Reason      string // "files changed", "rescan", "forced: SIGHUP" …
	Fingerprint string // sha256 over the site's paths and contents; "" when the directory is missing
}

// Watcher reports changes of a site directory on C. C holds at most one pending change: a
// consumer that is busy loading gets the latest one next, never a queue of stale ones.
type Watcher struct {
	C <-chan Change

	cfg      Config
	c        chan Change
	force    chan string
	sums     sums // content hashes of the files last fingerprinted
	last     string
	baseline bool // last was set by Fingerprint before Run
	parent   string
}

// New checks cfg and returns a Watcher; Run starts it.
func New(cfg Config) (*Watcher, error) {
	if cfg.Dir == "" {
		return nil, errors.New("watch: no directory given")
	}
	abs, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	cfg.Dir = abs
	if cfg.Quiet <= 0 {
		cfg.Quiet = 100 * time.Millisecond
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 3 * time.Second
	}
	if cfg.Resync == 0 {
		cfg.Resync = time.Minute
	}
	c := make(chan Change, 1)
	return &Watcher{C: c, cfg: cfg, c: c, force: make(chan string, 1), parent: filepath.Dir(abs)}, nil
}

// Fingerprint returns the fingerprint of the site now and makes it the baseline Run compares
// with: call it just before loading the site, and anything that changes after it is reported,
// even if it changes before Run has its watches in place.
func (w *Watcher) Fingerprint() string {
	w.last = w.fingerprint()
	w.baseline = true
	return w.last
}

// Trigger asks for a reload whatever the fingerprint says (systemctl reload, SIGHUP).
func (w *Watcher) Trigger(reason string) {
	select {
	case w.force <- reason:
	default: // one forced reload is already pending
	}
}

// Run watches until ctx ends. It reports changes since Fingerprint was called or, without that,
// since Run started.
func (w *Watcher) Run(ctx context.Context) error {
	fw, err := fsnotify.NewBufferedWatcher(1024)
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	defer fw.Close()
	w.rewatch(fw)
	if w.baseline {
		w.settle(fw, "changed while the watch started", false) // reports only if it moved
	} else {
		w.last = w.fingerprint()
	}

	var (
		quiet, maxWait <-chan time.Time
		reason         string
	)
	var resync <-chan time.Time
	if w.cfg.Resync > 0 {
		t := time.NewTicker(w.cfg.Resync)
		defer t.Stop()
		resync = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return errors.New("watch: fsnotify stopped")
			}
			if !w.relevant(ev.Name) {
				continue
			}
			if maxWait == nil {
				maxWait = time.After(w.cfg.MaxWait)
				reason = "files changed"
			}
			quiet = time.After(w.cfg.Quiet)
		case err, ok := <-fw.Errors:
			if !ok {
				return errors.New("watch: fsnotify stopped")
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Events were lost: look at everything again once things settle.
				reason = "rescan after event overflow"
				if maxWait == nil {
					maxWait = time.After(w.cfg.MaxWait)
				}
				quiet = time.After(w.cfg.Quiet)
			}
		case <-quiet:
			if w.gitBusy() {
				// git holds its index lock: a checkout or pull is still writing files, however
				// quiet it seems. Wait for it (at most MaxWait) rather than load half of it.
				quiet = time.After(w.cfg.Quiet)
				continue
			}
			quiet, maxWait = nil, nil
			w.settle(fw, reason, false)
		case <-maxWait:
			quiet, maxWait = nil, nil
			w.settle(fw, reason, false)
		case <-resync:
			w.settle(fw, "periodic rescan", false)
		case r := <-w.force:
			w.settle(fw, "forced: "+r, true)
		}
	}
}

// ignored names the files the site loader passes over besides hidden ones: editor backups
// ("a.toml~"). They come and go with every save and change nothing.
func ignored(name string) bool { return strings.HasSuffix(name, "~") }

// gitBusy reports whether a git command is working in the site (its index lock exists).
func (w *Watcher) gitBusy() bool {
	_, err := os.Stat(filepath.Join(w.cfg.Dir, ".git", "index.lock"))
	return err == nil
}

// relevant drops events that cannot change the site: anything hidden below the site directory
// (editor swap files, .git) and, in the parent, anything but the site directory itself.
func (w *Watcher) relevant(name string) bool {
	if filepath.Dir(name) == w.parent && name != w.cfg.Dir {
		return false
	}
	rel, err := filepath.Rel(w.cfg.Dir, name)
	if err != nil || rel == "." {
		return true
	}
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		if strings.HasPrefix(part, ".") && !strings.HasPrefix(part, "..") {
			return false // hidden, but not the ..data / ..2024_… entries of a projected directory
		}
	}
	return !ignored(filepath.Base(rel))
}

// settle re-reads the tree: it follows directories that appeared or were swapped, and reports
// a change when the fingerprint moved (or always, when forced).
func (w *Watcher) settle(fw *fsnotify.Watcher, reason string, force bool) {
	w.rewatch(fw)
	fp := w.fingerprint()
	if fp == w.last && !force {
		return
	}
	w.last = fp
	ch := Change{Reason: reason, Fingerprint: fp}
	select {
	case w.c <- ch:
	default:
		select { // replace the stale pending change with this one
		case <-w.c:
		default:
		}
		w.c <- ch
	}
}

// rewatch makes the watched set the parent, the site directory and every directory below it
// (symlinks followed, hidden ones skipped), as they are now. A directory swapped under the same
// name (a new ..data target) keeps its path but not its inode, and a deleted one loses its
// watch, so every wanted directory is added again; adding a watched one costs little.
func (w *Watcher) rewatch(fw *fsnotify.Watcher) {
	want := map[string]bool{w.parent: true}
	for _, d := range dirs(w.cfg.Dir) {
		want[d] = true
		if real, err := filepath.EvalSymlinks(d); err == nil {
			want[real] = true
		}
	}
	for _, d := range fw.WatchList() {
		if !want[d] {
			_ = fw.Remove(d) // it may be gone already
		}
	}
	for d := range want {
		_ = fw.Add(d) // it may be gone again already; the next settle looks again
	}
}

// dirs lists dir and the directories below it, following symlinks, skipping hidden ones.
func dirs(dir string) []string {
	info, err := os.Stat(dir)
	if err != nil || !info.IsDir() {
		return nil
	}
	out := []string{dir}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return out
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") && !strings.HasPrefix(e.Name(), "..") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			out = append(out, dirs(p)...)
		}
	}
	return out
}

// fileKey is what tells a file unchanged without reading it: any write changes its size,
// modification time or change time, and a replaced file has another inode.
type fileKey struct {
	ino, size    uint64
	mtime, ctime int64
}

type fileSum struct {
	key fileKey
	sum [sha256.Size]byte
}

// sums remembers each file's content hash by its fileKey, so that a fingerprint reads only the
// files that changed: on a site of 10,000 hosts, a dozen stat calls' worth instead of reading
// every file again.
type sums map[string]fileSum

// fingerprint hashes the path and content of every regular file the site could read: all
// non-hidden files below dir, symlinks followed. "" means the directory is missing.
func (w *Watcher) fingerprint() string {
	dir := w.cfg.Dir
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return ""
	}
	seen := make(sums, len(w.sums))
	h := sha256.New()
	var walk func(rel string)
	walk = func(rel string) {
		ents, err := os.ReadDir(filepath.Join(dir, rel))
		if err != nil {
			fmt.Fprintf(h, "unreadable %s: %v\n", rel, err)
			return
		}
		names := make([]string, 0, len(ents))
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), ".") && !ignored(e.Name()) {
				names = append(names, e.Name())
			}
		}
		slices.Sort(names)
		for _, n := range names {
			p := filepath.Join(rel, n)
			fi, err := os.Stat(filepath.Join(dir, p))
			switch {
			case err != nil:
				fmt.Fprintf(h, "broken %s\n", p)
			case fi.IsDir():
				walk(p)
			case fi.Mode().IsRegular():
				fs := w.sumOf(filepath.Join(dir, p), fi)
				seen[p] = fs
				fmt.Fprintf(h, "file %s %d %x\n", p, fi.Size(), fs.sum)
			}
		}
	}
	walk("")
	w.sums = seen
	return hex.EncodeToString(h.Sum(nil))
}

// sumOf returns the content hash of the file at full, from the cache when its key is unchanged.
func (w *Watcher) sumOf(full string, fi os.FileInfo) fileSum {
	key := fileKey{size: uint64(fi.Size())} //nolint:gosec // sizes are not negative
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		key.ino = st.Ino
		key.mtime = st.Mtim.Nano()
		key.ctime = st.Ctim.Nano()
	}
	rel, _ := filepath.Rel(w.cfg.Dir, full)
	if old, ok := w.sums[rel]; ok && old.key == key && key.ino != 0 {
		return old
	}
	fs := fileSum{key: key}
	h := sha256.New()
	if f, err := os.Open(full); err == nil {
		_, _ = io.Copy(h, f)
		_ = f.Close()
	} else {
		fmt.Fprintf(h, "unreadable: %v\n", err)
		fs.key = fileKey{} // look again next time
	}
	copy(fs.sum[:], h.Sum(nil))
	return fs
}
