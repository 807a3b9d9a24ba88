package site

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
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
func Load(dir string) (*Site, error) {
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
	l := &loader{root: root, site: &Site{Dir: dir, Roles: map[string]*Role{}}}
	l.loadSiteFile()
	l.loadHosts()
	l.loadRoles()
	l.validate()
	if len(l.errs) > 0 {
		l.errs.Sort()
		return nil, l.errs
	}
	l.applyDefaults()
	return l.site, nil
}

type loader struct {
	root    string // the site directory, absolute, symlinks resolved
	site    *Site
	siteDoc *tomlpos.Document
	hosts   []hostEntry
	roles   []roleEntry
	errs    Errors
	mu      sync.Mutex // guards errs while files load in parallel
}

type hostEntry struct {
	host *Host
	doc  *tomlpos.Document
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

// parse reads and parses one TOML file of the site and decodes it into v.
func (l *loader) parse(rel string, v any, what string) *tomlpos.Document {
	src, err := l.readFile(rel, maxTOMLSize)
	if err != nil {
		l.add(fileError(rel, "cannot read: "+err.Error(), ""))
		return nil
	}
	doc, perr := tomlpos.Parse(rel, src)
	if perr != nil {
		l.add(perr)
		return nil
	}
	l.add(decoder.Decode(doc, v, what)...)
	return doc
}

func (l *loader) loadSiteFile() {
	if _, err := os.Lstat(filepath.Join(l.root, SiteFile)); errors.Is(err, fs.ErrNotExist) {
		l.add(fileError(SiteFile, "missing: a site directory needs a site.toml",
			"create it with [site], [network] and [defaults]; see docs/site.md"))
		return
	}
	var f siteFile
	l.siteDoc = l.parse(SiteFile, &f, SiteFile)
	l.site.Settings, l.site.Network, l.site.Defaults = f.Site, f.Network, f.Defaults
}

// listTOML lists the *.toml files of a sub-directory, sorted, as slash paths relative to the site.
func (l *loader) listTOML(sub string) []string {
	entries, err := os.ReadDir(filepath.Join(l.root, sub))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		l.add(fileError(sub, "cannot read directory: "+err.Error(), ""))
		return nil
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		rel := path.Join(sub, name)
		switch {
		case strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~"):
			// hidden files, editor swap and backup files
		case e.IsDir():
			l.add(fileError(rel, "sub-directories of "+sub+"/ are not read",
				"move its .toml files into "+sub+"/ itself"))
		case strings.HasSuffix(name, ".toml"):
			files = append(files, rel)
		}
	}
	return files
}

func stem(rel string) string { return strings.TrimSuffix(path.Base(rel), ".toml") }

func (l *loader) loadHosts() {
	files := l.listTOML(HostsDir)
	l.hosts = make([]hostEntry, len(files))
	parallel(len(files), func(i int) {
		h := &Host{File: files[i]}
		l.hosts[i] = hostEntry{host: h, doc: l.parse(files[i], h, "host file")}
	})
	l.hosts = slices.DeleteFunc(l.hosts, func(e hostEntry) bool { return e.doc == nil })
}

func (l *loader) loadRoles() {
	files := l.listTOML(RolesDir)
	l.roles = make([]roleEntry, len(files))
	parallel(len(files), func(i int) {
		r := &Role{Name: stem(files[i]), File: files[i]}
		l.roles[i] = roleEntry{role: r, doc: l.parse(files[i], r, "role file")}
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
