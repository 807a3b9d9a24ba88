// Package watch tells the daemon when the site directory has changed: it watches the
// directory, its sub-directories and its parent with fsnotify, waits for a burst of events to
// settle (a quiet period, bounded by a maximum wait), and reports a change only when the
// content of the site really differs from what it last reported. So an editor's atomic save,
// a `git checkout`, a swapped `..data` symlink or a directory removed and created again each
// give one reload, and temp files that come and go give none. A periodic rescan catches
// changes on filesystems that send no events, and an event-queue overflow forces one.
//
// It keeps what it last saw of every file (inode, size, times, content hash). After a burst of
// events that name only files it knows, or new files in directories it knows, it looks at
// those files alone; anything else (a directory created or swapped, a path it cannot place,
// lost events) makes it walk the whole tree. Either way a Change lists the files whose content
// changed, so that the site loader parses those alone.
//
// It does not parse anything (package site does); it takes from site only which names the site
// ignores.
package watch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/cairn-appliance/cairn/site"
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
	Reason      string // for the log: "files changed", "periodic rescan", "systemctl reload" …
	Fingerprint string // sha256 over the site's paths and contents; "" when the directory is missing
	// Files lists the files (slash paths relative to the site directory, sorted) that
	// appeared, vanished or changed content since the last Change (or Fingerprint).
	Files []string
	// All is set for a reload asked for with Trigger: the whole site should be read again
	// whatever Files says, and the reload answered even when nothing changed.
	All bool
}

// Watcher reports changes of a site directory on C. C holds at most one pending change: a
// consumer that is busy loading gets the latest one next, never a queue of stale ones.
type Watcher struct {
	C <-chan Change

	cfg      Config
	c        chan Change
	force    chan string
	tree     tree // what the last look saw
	last     string
	baseline bool // last was set by Fingerprint before Run
	parent   string

	// Since the last look: the paths events named, or that they named something only a walk
	// of the whole tree can place.
	touched map[string]bool
	walk    bool
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
	w.tree = w.scan()
	w.last = w.tree.digest()
	w.baseline = true
	return w.last
}

// Dir is the absolute path of the site directory watched.
func (w *Watcher) Dir() string { return w.cfg.Dir }

// Trigger asks for a reload whatever the fingerprint says (systemctl reload, SIGHUP): the next
// Change has All set and reason as its Reason.
func (w *Watcher) Trigger(reason string) {
	select {
	case w.force <- reason:
	default: // one forced reload is already pending
	}
}

// Run watches until ctx ends, then returns ctx.Err(). It reports changes since Fingerprint was
// called or, without that, since Run started.
func (w *Watcher) Run(ctx context.Context) error {
	fw, err := fsnotify.NewBufferedWatcher(1024)
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	defer fw.Close()
	w.rewatch(fw)
	var (
		quiet, maxWait <-chan time.Time
		reason         string
	)
	if w.baseline {
		// What changed since Fingerprint, before the watches were in place, is looked at like
		// a burst of events: once things settle (and git is done), with one walk, reported
		// only if the fingerprint moved. Events that follow join the same burst.
		w.walk, reason = true, "changed while the watch started"
		quiet, maxWait = time.After(w.cfg.Quiet), time.After(w.cfg.MaxWait)
	} else {
		w.tree = w.scan()
		w.last = w.tree.digest()
	}
	var resync <-chan time.Time
	if w.cfg.Resync > 0 {
		t := time.NewTicker(w.cfg.Resync)
		defer t.Stop()
		resync = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-fw.Events:
			if !ok {
				return errors.New("watch: fsnotify stopped")
			}
			if !w.relevant(ev.Name) {
				continue
			}
			w.note(ev.Name)
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
				reason, w.walk = "rescan after event overflow", true
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
			w.walk = true
			w.settle(fw, "periodic rescan", false)
		case r := <-w.force:
			w.walk = true
			w.settle(fw, r, true)
		}
	}
}

// gitBusy reports whether a git command is working in the site (its index lock exists).
func (w *Watcher) gitBusy() bool {
	_, err := os.Stat(filepath.Join(w.cfg.Dir, ".git", "index.lock"))
	return err == nil
}

// relevant drops events that cannot change the site: anything below the site directory that
// the site ignores (editor swap and backup files, .git) and, in the parent, anything but the
// site directory itself. The ".."-prefixed entries of a projected directory (..data,
// ..2024_…) are followed: the site's symlinks point into them.
func (w *Watcher) relevant(name string) bool {
	if filepath.Dir(name) == w.parent && name != w.cfg.Dir {
		return false
	}
	rel, err := filepath.Rel(w.cfg.Dir, name)
	if err != nil || rel == "." {
		return true
	}
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		if site.Ignored(part) && !projected(part) {
			return false
		}
	}
	return true
}

// projected reports whether name is an entry of a projected directory (a Kubernetes ConfigMap
// volume's ..data or ..2024_…): hidden, yet what the site's symlinks resolve through.
func projected(name string) bool { return strings.HasPrefix(name, "..") }

// note records a relevant event's path for the next look: a file in a directory it has
// listed can be looked at alone; a directory, or anything it cannot place, needs a walk.
func (w *Watcher) note(name string) {
	rel, err := filepath.Rel(w.cfg.Dir, name)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		w.walk = true // the site directory itself, or its parent's view of it
		return
	}
	rel = filepath.ToSlash(rel)
	if w.tree.dirs[rel] || !w.tree.dirs[path.Dir(rel)] {
		w.walk = true // a directory itself, or a path in one it has not listed
		return
	}
	if w.touched == nil {
		w.touched = map[string]bool{}
	}
	w.touched[rel] = true
}

// settle looks at the tree again: at the files events named when it can, at the whole tree
// otherwise. It follows directories that appeared or were swapped, and reports a change when
// the fingerprint moved (or always, when forced).
func (w *Watcher) settle(fw *fsnotify.Watcher, reason string, force bool) {
	var changed []string
	walk := w.walk || w.tree.files == nil
	if !walk {
		var ok bool
		if changed, ok = w.restat(w.touched); !ok {
			walk = true
		}
	}
	if walk {
		old := w.tree
		w.rewatch(fw)
		w.tree = w.scan()
		changed = old.diff(w.tree)
	}
	w.touched, w.walk = nil, false
	fp := w.tree.digest()
	if fp == w.last && !force {
		return
	}
	w.last = fp
	ch := Change{Reason: reason, Fingerprint: fp, Files: changed, All: force}
	select {
	case w.c <- ch:
	default:
		select { // replace the stale pending change with this one, keeping what it listed
		case stale := <-w.c:
			ch.Files = merge(stale.Files, ch.Files)
			ch.All = ch.All || stale.All
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
		if site.Ignored(e.Name()) && !projected(e.Name()) {
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

func keyOf(fi os.FileInfo) fileKey {
	key := fileKey{size: uint64(fi.Size())} //nolint:gosec // sizes are not negative
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		key.ino = st.Ino
		key.mtime = st.Mtim.Nano()
		key.ctime = st.Ctim.Nano()
	}
	return key
}

// What a path of the tree is.
const (
	regular    = iota
	broken     // a dangling symlink, or one that cannot be followed
	unreadable // a directory that cannot be listed
)

// entry is what a look saw at one path.
type entry struct {
	kind int
	key  fileKey
	sum  [sha256.Size]byte // of a regular file's content
	note string            // why it is unreadable
}

// sameContent reports whether a reader sees the same at both entries.
func (e entry) sameContent(o entry) bool {
	return e.kind == o.kind && e.sum == o.sum && e.note == o.note
}

// tree is what one look saw: every non-hidden path below the site directory that the site
// could read (symlinks followed), by slash path relative to it, and the directories listed.
type tree struct {
	files   map[string]entry
	dirs    map[string]bool
	missing bool     // the site directory is not there
	paths   []string // of files, sorted; nil until digest needs it
}

// digest is the fingerprint of t: sha256 over every path and what it holds, in path order.
// "" means the directory is missing.
func (t *tree) digest() string {
	if t.missing {
		return ""
	}
	if t.paths == nil {
		t.paths = slices.Sorted(maps.Keys(t.files))
	}
	paths := t.paths
	h := sha256.New()
	var line []byte
	for _, p := range paths {
		e := t.files[p]
		line = line[:0]
		switch e.kind {
		case regular:
			line = append(line, "file "...)
			line = append(line, p...)
			line = append(line, ' ')
			line = strconv.AppendUint(line, e.key.size, 10)
			line = append(line, ' ')
			line = hex.AppendEncode(line, e.sum[:])
		case broken:
			line = append(line, "broken "...)
			line = append(line, p...)
		case unreadable:
			line = append(line, "unreadable "...)
			line = append(line, p...)
			line = append(line, ": "...)
			line = append(line, e.note...)
		}
		line = append(line, '\n')
		h.Write(line)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Digest is the fingerprint (as in Change.Fingerprint) of a site directory whose regular
// files are these, by slash path relative to it, and which holds nothing else a look would
// see (no dangling symlinks, no directory it cannot list). A backup checks with it that its
// copy of the site is the one the state last loaded.
func Digest(files map[string][]byte) string {
	t := tree{files: make(map[string]entry, len(files))}
	for p, b := range files {
		t.files[p] = entry{kind: regular, key: fileKey{size: uint64(len(b))}, sum: sha256.Sum256(b)}
	}
	return t.digest()
}

// diff lists the paths whose entry differs between t and u in what a reader sees: appeared,
// vanished, or other content.
func (t tree) diff(u tree) []string {
	var out []string
	for p, e := range u.files {
		if o, ok := t.files[p]; !ok || !o.sameContent(e) {
			out = append(out, p)
		}
	}
	for p := range t.files {
		if _, ok := u.files[p]; !ok {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// merge returns the sorted union of two sorted lists.
func merge(a, b []string) []string {
	out := slices.Concat(a, b)
	slices.Sort(out)
	return slices.Compact(out)
}

// scan walks the whole tree: every non-hidden file below the site directory, symlinks followed.
// Files whose key is what the last look saw keep their hash, unread.
func (w *Watcher) scan() tree {
	dir := w.cfg.Dir
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return tree{missing: true, files: map[string]entry{}, dirs: map[string]bool{}}
	}
	t := tree{files: make(map[string]entry, len(w.tree.files)), dirs: map[string]bool{}}
	var walk func(rel string)
	walk = func(rel string) {
		ents, err := os.ReadDir(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			t.files[rel] = entry{kind: unreadable, note: err.Error()}
			return
		}
		t.dirs[rel] = true
		for _, e := range ents {
			if site.Ignored(e.Name()) {
				continue // projected entries too: the site's symlinks reach what they hold
			}
			p := path.Join(rel, e.Name())
			fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(p)))
			switch {
			case err != nil:
				t.files[p] = entry{kind: broken}
			case fi.IsDir():
				walk(p)
			case fi.Mode().IsRegular():
				t.files[p] = w.entryOf(p, fi)
			}
		}
	}
	walk(".")
	return t
}

// restat looks again at the given paths alone, updates the tree with what it finds and
// returns the paths whose content changed. ok is false when one of them has become something
// only a walk can follow (a directory); the tree is then left for a walk to replace.
func (w *Watcher) restat(paths map[string]bool) (changed []string, ok bool) {
	next := make(map[string]entry, len(paths))
	gone := map[string]bool{}
	for p := range paths {
		fi, err := os.Stat(filepath.Join(w.cfg.Dir, filepath.FromSlash(p)))
		switch {
		case err == nil && fi.IsDir():
			return nil, false
		case err == nil && fi.Mode().IsRegular():
			next[p] = w.entryOf(p, fi)
		case err == nil: // a device, a socket: nothing the site reads
			gone[p] = true
		case errors.Is(err, fs.ErrNotExist):
			if _, lerr := os.Lstat(filepath.Join(w.cfg.Dir, filepath.FromSlash(p))); lerr == nil {
				next[p] = entry{kind: broken} // a dangling symlink
			} else {
				gone[p] = true
			}
		default:
			next[p] = entry{kind: broken}
		}
	}
	t := &w.tree
	for p, e := range next {
		old, had := t.files[p]
		if !had {
			t.paths = nil // the sorted list of paths changes
		}
		if !had || !old.sameContent(e) {
			changed = append(changed, p)
		}
		t.files[p] = e
	}
	for p := range gone {
		if _, had := t.files[p]; had {
			delete(t.files, p)
			t.paths = nil
			changed = append(changed, p)
		}
	}
	slices.Sort(changed)
	return changed, true
}

// entryOf returns the entry of the regular file at rel, reading it only when its key differs
// from what the last look saw.
func (w *Watcher) entryOf(rel string, fi os.FileInfo) entry {
	key := keyOf(fi)
	if old, ok := w.tree.files[rel]; ok && old.kind == regular && old.key == key && key.ino != 0 {
		return old
	}
	e := entry{kind: regular, key: key}
	h := sha256.New()
	if f, err := os.Open(filepath.Join(w.cfg.Dir, filepath.FromSlash(rel))); err == nil {
		_, _ = io.Copy(h, f)
		_ = f.Close()
	} else {
		fmt.Fprintf(h, "unreadable: %v\n", err)
		e.key = fileKey{} // look again next time
	}
	copy(e.sum[:], h.Sum(nil))
	return e
}
