package backup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/cairn-appliance/cairn/daemon/watch"
	"github.com/cairn-appliance/cairn/site"
)

// Site is a copy of a site directory's files, read at one moment.
type Site struct {
	Dir     string
	Missing bool     // the directory is not there
	Dirs    []string // its sub-directories, slash paths relative to it, sorted
	Files   []File   // its files, sorted by path
}

// File is one file of a site copy.
type File struct {
	Path string // slash path relative to the site directory
	Data []byte
}

// Fingerprint is the watcher's fingerprint of the site copied (watch.Digest), "" when it was
// missing: equal to the state's fingerprint of the site it last loaded when that is the site
// copied.
func (s *Site) Fingerprint() string {
	if s.Missing {
		return ""
	}
	files := make(map[string][]byte, len(s.Files))
	for _, f := range s.Files {
		files[f.Path] = f.Data
	}
	return watch.Digest(files)
}

// ReadSite copies the site directory dir into memory as the watcher sees it: every regular
// file and directory but what site.Ignored passes over, symlinks followed. A symlink that
// leads outside the directory, nowhere, or into a loop is an error that names it. Other
// special files (sockets, pipes) are passed over, as the watcher does.
func ReadSite(dir string) (*Site, error) {
	s := &Site{Dir: dir}
	info, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		s.Missing = true
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("reading the site: %w", err)
	case !info.IsDir():
		return nil, fmt.Errorf("reading the site: %s is not a directory", dir)
	}
	root, err := filepath.EvalSymlinks(dir)
	if err == nil {
		root, err = filepath.Abs(root)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the site: %w", err)
	}
	r := &siteReader{root: root, site: s}
	if err := r.walk(".", map[string]bool{root: true}); err != nil {
		return nil, err
	}
	return s, nil
}

type siteReader struct {
	root string
	site *Site
}

// walk copies the directory rel; open holds the real paths of the directories being walked,
// to catch a symlink that loops back to one of them.
func (r *siteReader) walk(rel string, open map[string]bool) error {
	full := filepath.Join(r.root, filepath.FromSlash(rel))
	entries, err := os.ReadDir(full)
	if err != nil {
		return fmt.Errorf("reading the site: %w", err)
	}
	for _, e := range entries { // sorted by name: Dirs and Files come out sorted
		if site.Ignored(e.Name()) {
			continue
		}
		p := path.Join(rel, e.Name())
		fp := filepath.Join(r.root, filepath.FromSlash(p))
		real, mode := fp, e.Type()
		if mode&fs.ModeSymlink != 0 {
			if real, err = r.resolve(p, fp); err != nil {
				return err
			}
			info, err := os.Stat(real)
			if err != nil {
				return fmt.Errorf("reading the site: %w", err)
			}
			mode = info.Mode()
		}
		switch {
		case mode.IsDir():
			if open[real] {
				return fmt.Errorf("site file %s is a symlink that loops back to a directory above it; a backup cannot copy it: remove it", p)
			}
			open[real] = true
			r.site.Dirs = append(r.site.Dirs, p)
			if err := r.walk(p, open); err != nil {
				return err
			}
			delete(open, real)
		case mode.IsRegular():
			b, err := os.ReadFile(real)
			if err != nil {
				return fmt.Errorf("reading the site: %w", err)
			}
			r.site.Files = append(r.site.Files, File{Path: p, Data: b})
		}
	}
	return nil
}

// resolve follows the symlink at rel (full path fp) and returns where it leads, inside the site.
func (r *siteReader) resolve(rel, fp string) (string, error) {
	real, err := filepath.EvalSymlinks(fp)
	if err != nil {
		target, _ := os.Readlink(fp)
		return "", fmt.Errorf("site file %s is a symlink to %q, which leads nowhere; a backup keeps what the site holds: remove the link or point it at a file of the site", rel, target)
	}
	if in, err := filepath.Rel(r.root, real); err != nil || in == ".." || strings.HasPrefix(in, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("site file %s is a symlink leading outside the site directory (to %s), which the site does not read; a backup keeps what the site holds: copy the file into the site instead", rel, real)
	}
	return real, nil
}
