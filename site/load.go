package site

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/cairn-appliance/cairn/site/tomlpos"
)

// File names and limits of a site directory.
const (
	SiteFile = "site.toml"
	HostsDir = "hosts"
	RolesDir = "roles"

	maxTOMLSize = 1 << 20 // a larger site file is a mistake, not a site
	maxDataSize = 1 << 20 // container config files are carried in state and in units
)

// Load reads the site directory dir and returns the whole site, or every problem it has as
// Errors (each with file, line, column, key, what was expected and a hint). It reads only
// files inside dir: site.toml, hosts/*.toml, roles/*.toml and the files containers mount.
// Hidden files and editor leftovers (".#a.toml", "a.toml~") are ignored.
func Load(dir string) (*Site, error) { return NewLoader(dir).Load() }

// A Loader loads one site directory again and again, as the daemon does after every edit. It
// keeps the listing of hosts/ and every host file as it last parsed it, and looks again only
// at the host files it is told changed (Changed): it parses them again, or adds them to its
// listing or drops them from it. site.toml, the roles, the files containers mount and every
// check that spans files are read and run on each Load. On a site of 10,000 hosts an edit of
// one host file so costs one parse and one lstat, not 10,000 of each, and Load returns what
// site.Load would, as long as every change (a file written, created or removed) is reported:
// the loader trusts what it is told. Host files reached through a symlink of their own are
// read every time, and a site or hosts directory that resolves elsewhere than before (a
// swapped ..data link) is read afresh.
//
// A host whose file did not change, while [defaults] did not either, is the same *Host as the
// last Load returned: treat a Site as read-only.
type Loader struct {
	dir string

	mu       sync.Mutex // one Load at a time
	root     string     // the site directory as the last Load resolved it
	hostsDir string     // and its hosts/ directory
	kept     map[string]*parsedHost
	list     *hostList       // the host files as listed; nil: list them again
	stale    map[string]bool // host files reported changed since the last Load
	defaults *Defaults       // of the last valid Load
}

// hostList is the listing of hosts/: its *.toml files, sorted, and what listing it found wrong.
type hostList struct {
	files []string
	links map[string]bool // the files that are symlinks
	errs  []*Error
}

// parsedHost is a host file as the Loader last parsed it.
type parsedHost struct {
	host    Host              // as decoded, named after its file when it names no host
	doc     *tomlpos.Document // nil when the file did not parse or decode at all
	errs    []*Error          // what the file alone gets wrong
	named   bool              // the file sets name
	badName bool              // its file name is no host name and it sets none
	final   *Host             // as the last valid Load returned it, defaults applied
}

// NewLoader returns a Loader of the site directory dir that has read nothing yet.
func NewLoader(dir string) *Loader { return &Loader{dir: dir} }

// Changed tells the loader that the files at paths (relative to the site directory) were
// written, created or removed since its last Load: the next Load looks at them again. Files
// other than host files need no telling (they are read every time); naming the hosts directory
// itself makes the next Load read all of it.
func (l *Loader) Changed(paths ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range paths {
		p = path.Clean(filepath.ToSlash(p))
		switch {
		case p == "." || p == HostsDir:
			l.kept, l.list = nil, nil
		case strings.HasPrefix(p, HostsDir+"/"):
			if l.stale == nil {
				l.stale = map[string]bool{}
			}
			l.stale[p] = true
			if path.Dir(p) != HostsDir {
				l.list = nil // inside a sub-directory: listing hosts/ says what is wrong
			}
		}
	}
}

// Forget makes the next Load read every file again.
func (l *Loader) Forget() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.kept, l.list = nil, nil
}

// Load reads the site as it is now; see Load.
func (l *Loader) Load() (*Site, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	dir := l.dir
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoSite, err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("%w: %s is a file; give the directory that holds site.toml", ErrNoSite, dir)
	}
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoSite, err)
	}
	if root, err = filepath.Abs(root); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoSite, err)
	}
	hostsDir, _ := filepath.EvalSymlinks(filepath.Join(root, HostsDir))
	if root != l.root || hostsDir != l.hostsDir {
		l.kept, l.list = nil, nil // other files altogether
	}
	l.root, l.hostsDir = root, hostsDir
	ld := &loader{root: root, site: &Site{Dir: dir, Roles: map[string]*Role{}}, kept: l.kept, list: l.list, stale: l.stale}
	ld.loadSiteFile()
	ld.loadHosts()
	ld.loadRoles()
	ld.validate()
	l.kept, l.list, l.stale = ld.kept, ld.list, nil
	if len(ld.errs) > 0 {
		ld.errs.Sort()
		return nil, ld.errs
	}
	ld.applyDefaults(l.defaults)
	defaults := ld.site.Defaults
	l.defaults = &defaults
	return ld.site, nil
}

// loader is one Load of a site.
type loader struct {
	root    string // the site directory, absolute, symlinks resolved
	site    *Site
	siteDoc *tomlpos.Document
	hosts   []hostEntry
	roles   []roleEntry
	errs    Errors
	mu      sync.Mutex // guards errs while files load in parallel

	kept  map[string]*parsedHost // host files parsed by earlier loads, by path
	list  *hostList              // hosts/ as an earlier load listed it, or nil
	stale map[string]bool        // host files that changed since

	rolesOK map[string]bool // lists of roles found faultless on a host, joined by NUL
}

// hostEntry is a host of this load, as its file was parsed: validation reads it, and
// applyDefaults fills in a copy.
type hostEntry struct {
	host   *Host
	doc    *tomlpos.Document
	parsed *parsedHost // final is set once a valid load has filled in its defaults
}

type roleEntry struct {
	role *Role
	doc  *tomlpos.Document
}

func (l *loader) add(errs ...*Error) {
	l.mu.Lock()
	l.errs = append(l.errs, errs...)
	l.mu.Unlock()
}

func fileError(file, msg, hint string) *Error {
	return &Error{File: file, Line: 1, Column: 1, Message: msg, Hint: hint}
}

// readFile reads rel (slash-separated, relative to the site directory) after making sure that
// it, and whatever symlink it goes through, stays inside the site directory.
func (l *loader) readFile(rel string, limit int64) ([]byte, error) {
	full := filepath.Join(l.root, filepath.FromSlash(rel))
	real, err := filepath.EvalSymlinks(full)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errors.New("no such file")
		}
		return nil, err
	}
	if r, err := filepath.Rel(l.root, real); err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
		return nil, errors.New("leads outside the site directory through a symlink")
	}
	info, err := os.Stat(real)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	if info.Size() > limit {
		return nil, fmt.Errorf("%d bytes is larger than the limit of %d", info.Size(), limit)
	}
	return os.ReadFile(real)
}

// patternText says in words what each pattern tag of the model accepts.
var patternText = map[string]string{
	`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`: "a DNS label: lowercase letters, digits and '-', at most 63, not starting or ending with '-'",
	`^[a-z0-9][a-z0-9._-]*$`:               "a name of lowercase letters, digits, '.', '_' and '-', starting with a letter or digit",
	`^[A-Za-z0-9_-]{1,36}$`:                "a label of letters, digits, '_' and '-', at most 36",
	`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`:    "a name of letters, digits, '_', '.' and '-', at most 63, starting with a letter or digit",
}

var decoder = tomlpos.Decoder{Patterns: patternText}

// parse reads and parses one TOML file of the site and decodes it into v. The document is nil
// when the file could not be read or parsed.
func (l *loader) parse(rel string, v any, what string) (*tomlpos.Document, []*Error) {
	src, err := l.readFile(rel, maxTOMLSize)
	if err != nil {
		return nil, []*Error{fileError(rel, "cannot read: "+err.Error(), "")}
	}
	doc, perr := tomlpos.Parse(rel, src)
	if perr != nil {
		return nil, []*Error{perr}
	}
	return doc, decoder.Decode(doc, v, what)
}

func (l *loader) loadSiteFile() {
	if _, err := os.Lstat(filepath.Join(l.root, SiteFile)); errors.Is(err, fs.ErrNotExist) {
		l.add(fileError(SiteFile, "missing: a site directory needs a site.toml",
			"create it with [site], [network] and [defaults]; see docs/site.md"))
		return
	}
	var f siteFile
	var errs []*Error
	l.siteDoc, errs = l.parse(SiteFile, &f, SiteFile)
	l.add(errs...)
	l.site.Settings, l.site.Network, l.site.Defaults = f.Site, f.Network, f.Defaults
}

// listTOML lists the *.toml files of a sub-directory, sorted, as slash paths relative to the
// site, and says which are symlinks.
func (l *loader) listTOML(sub string) (files []string, links map[string]bool) {
	entries, err := os.ReadDir(filepath.Join(l.root, sub))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		l.add(fileError(sub, "cannot read directory: "+err.Error(), ""))
		return nil, nil
	}
	links = map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		rel := path.Join(sub, name)
		switch {
		case Ignored(name):
		case e.IsDir():
			l.add(fileError(rel, "sub-directories of "+sub+"/ are not read",
				"move its .toml files into "+sub+"/ itself"))
		case strings.HasSuffix(name, ".toml"):
			files = append(files, rel)
			if e.Type()&fs.ModeSymlink != 0 {
				links[rel] = true
			}
		}
	}
	return files, links
}

// Ignored reports whether the site passes over a file or directory of this name: hidden ones
// (".git", an editor's ".#a.toml" or ".a.toml.swp") and editor backups ("a.toml~"). They come
// and go with every save and are never part of the site; the daemon's watcher skips them too.
func Ignored(name string) bool { return strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~") }

func stem(rel string) string { return strings.TrimSuffix(path.Base(rel), ".toml") }

// loadHosts parses the host files that are new or changed, in parallel, and takes the others
// as earlier loads parsed them.
func (l *loader) loadHosts() {
	l.listHosts()
	files, links := l.list.files, l.list.links
	l.add(l.list.errs...)
	parsed := make([]*parsedHost, len(files))
	var todo []int
	for i, f := range files {
		if p, ok := l.kept[f]; ok && !l.stale[f] && !links[f] {
			parsed[i] = p
		} else {
			todo = append(todo, i)
		}
	}
	parallel(len(todo), func(j int) { parsed[todo[j]] = l.parseHost(files[todo[j]]) })
	if l.kept == nil {
		l.kept = make(map[string]*parsedHost, len(files))
	}
	for i, p := range parsed {
		l.kept[files[i]] = p
		l.add(p.errs...)
		if p.doc == nil || p.badName {
			continue
		}
		// Validation only reads the host; applyDefaults copies it before it writes.
		l.hosts = append(l.hosts, hostEntry{host: &p.host, doc: p.doc, parsed: p})
	}
	if len(l.kept) > len(files) { // files went away: forget them
		listed := make(map[string]bool, len(files))
		for _, f := range files {
			listed[f] = true
		}
		maps.DeleteFunc(l.kept, func(f string, _ *parsedHost) bool { return !listed[f] })
	}
}

// listHosts brings the listing of hosts/ up to date: it looks at the files reported changed
// alone when it has a listing, and lists the directory otherwise.
//
// A listing that found something wrong (a sub-directory, an unreadable directory) is not
// kept: the next load lists again, so that the problem goes once it is fixed, events or not.
func (l *loader) listHosts() {
	if l.list != nil && len(l.list.errs) == 0 && l.relist() {
		return
	}
	before := len(l.errs)
	files, links := l.listTOML(HostsDir)
	if links == nil {
		links = map[string]bool{} // no hosts/ yet: relist may add to it
	}
	l.list = &hostList{files: files, links: links, errs: slices.Clone(l.errs[before:])}
	l.errs = l.errs[:before] // loadHosts adds them, as it does a kept listing's
}

// relist updates the kept listing with the files reported changed; false when one of them is
// something only listing the directory handles.
func (l *loader) relist() bool {
	list := &hostList{files: slices.Clone(l.list.files), links: maps.Clone(l.list.links), errs: l.list.errs}
	for f := range l.stale {
		name := path.Base(f)
		if path.Dir(f) != HostsDir || Ignored(name) || !strings.HasSuffix(name, ".toml") {
			if path.Dir(f) != HostsDir {
				return false
			}
			continue // not a host file, as listing would find
		}
		i, listed := slices.BinarySearch(list.files, f)
		info, err := os.Lstat(filepath.Join(l.root, filepath.FromSlash(f)))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if listed {
				list.files = slices.Delete(list.files, i, i+1)
				delete(list.links, f)
			}
		case err != nil || info.IsDir():
			return false
		default:
			if !listed {
				list.files = slices.Insert(list.files, i, f)
			}
			if info.Mode()&fs.ModeSymlink != 0 {
				list.links[f] = true
			} else {
				delete(list.links, f)
			}
		}
	}
	l.list = list
	return true
}

// parseHost parses one host file and checks what it alone can get wrong.
func (l *loader) parseHost(rel string) *parsedHost {
	p := &parsedHost{host: Host{File: rel}}
	h := &p.host
	p.doc, p.errs = l.parse(rel, h, "host file")
	d := p.doc
	if d == nil {
		return p
	}
	d.Data = nil // decoded; what is kept is the positions, for messages
	p.named = h.Name != ""
	if !p.named {
		h.Name = stem(h.File)
		if !hostnameRe.MatchString(h.Name) {
			p.badName = true
			p.errs = append(p.errs, fileError(h.File, fmt.Sprintf("file name %q is not a valid host name", h.Name),
				`rename the file (lowercase letters, digits and '-'), or set name = "..." in it`))
			return p
		}
	}
	p.errs = append(p.errs, checkKeys(d, "ssh_authorized_keys", h.SSHAuthorizedKeys)...)
	p.errs = append(p.errs, checkTimezone(d, "timezone", h.Timezone)...)
	for _, k := range tomlpos.SortedKeys(h.Labels) {
		if !labelKeyRe.MatchString(k) {
			p.errs = append(p.errs, d.ErrAt(tomlpos.Join("labels", k), true, fmt.Sprintf("%q is not a label key", k), "use letters, digits, '.', '_', '-' and '/', at most 63, starting and ending with a letter or digit"))
		}
	}
	p.errs = append(p.errs, checkPartitions(d, h)...)
	return p
}

func (l *loader) loadRoles() {
	files, _ := l.listTOML(RolesDir)
	l.roles = make([]roleEntry, len(files))
	parallel(len(files), func(i int) {
		r := &Role{Name: stem(files[i]), File: files[i]}
		doc, errs := l.parse(files[i], r, "role file")
		l.add(errs...)
		r.doc = doc
		l.roles[i] = roleEntry{role: r, doc: doc}
	})
	for _, e := range l.roles {
		l.site.Roles[e.role.Name] = e.role // roles that failed to parse still count as defined
	}
	l.roles = slices.DeleteFunc(l.roles, func(e roleEntry) bool { return e.doc == nil })
}

// parallel runs fn(0..n-1) on as many goroutines as there are CPUs.
func parallel(n int, fn func(i int)) {
	workers := min(n, runtime.GOMAXPROCS(0))
	var next sync.Mutex
	i := 0
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				next.Lock()
				j := i
				i++
				next.Unlock()
				if j >= n {
					return
				}
				fn(j)
			}
		})
	}
	wg.Wait()
}

// readData loads a file a container mounts, for the role in doc at key path.
func (l *loader) readData(doc *tomlpos.Document, keyPath string, f *File) {
	src := f.Source
	switch clean := path.Clean(src); {
	case strings.HasPrefix(src, "/"):
		l.add(doc.ErrAt(keyPath, false, fmt.Sprintf("%q is an absolute path", src),
			"give a path relative to the site directory, e.g. \"files/app.conf\""))
		return
	case clean == ".." || strings.HasPrefix(clean, "../"):
		l.add(doc.ErrAt(keyPath, false, fmt.Sprintf("%q leads outside the site directory", src),
			"keep the file inside the site directory, e.g. under files/"))
		return
	}
	data, err := l.readFile(path.Clean(src), maxDataSize)
	if err != nil {
		l.add(doc.ErrAt(keyPath, false, fmt.Sprintf("%q: %v", src, err),
			"the file must be a regular file inside the site directory"))
		return
	}
	sum := sha256.Sum256(data)
	f.Data, f.SHA256 = data, hex.EncodeToString(sum[:])
}
