package host

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cairn-appliance/cairn/agent/quadlet"
)

// writeFileAtomic writes data to path through a temporary file in the same directory, synced
// before it is renamed over path, and syncs the directory: path holds the old content or the
// new, whole, whatever happens.
func writeFileAtomic(path string, data []byte, mode fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil { //nolint:gosec // G301: unit, config and registries.conf directories are world-readable
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly once renamed
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

// readUnits reads the unit files of dir: name to content. A missing dir holds none.
func readUnits(dir string) (map[string][]byte, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string][]byte{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the unit directory: %w", err)
	}
	units := make(map[string][]byte, len(ents))
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading the unit directory: %w", err)
		}
		units[e.Name()] = b
	}
	return units, nil
}

// diffUnits compares the units on disk with want: the names on disk that want lacks
// (removed), and the names of want that are new or differ (changed), each sorted.
func diffUnits(onDisk map[string][]byte, want []quadlet.Unit) (removed, changed []string) {
	w := make(map[string]bool, len(want))
	for _, u := range want {
		w[u.Name] = true
		if old, ok := onDisk[u.Name]; !ok || !bytes.Equal(old, u.Data) {
			changed = append(changed, u.Name)
		}
	}
	for name := range onDisk {
		if !w[name] {
			removed = append(removed, name)
		}
	}
	sort.Strings(removed)
	sort.Strings(changed)
	return removed, changed
}

// stage writes units into a fresh directory dir, each file and dir synced.
func stage(dir string, units []quadlet.Unit) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil { //nolint:gosec // G301: quadlet reads it as any unit directory
		return err
	}
	for _, u := range units {
		if !safeName(u.Name) {
			return fmt.Errorf("the unit name %q is not a plain file name", u.Name)
		}
		f, err := os.OpenFile(filepath.Join(dir, u.Name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644) //nolint:gosec // G302: unit files are world-readable
		if err != nil {
			return err
		}
		_, err = f.Write(u.Data)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return syncDir(dir)
}

func safeName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\\\x00") && !strings.HasPrefix(name, ".")
}

// swap makes the staged directory the unit directory: it exchanges the two atomically
// (renameat2 RENAME_EXCHANGE), or renames staged into place when there is no unit directory
// yet, and then removes the old copy, now at staged. Quadlet sees the old units or the new,
// never a mix, and no old copy is left for a later reload to find.
func swap(staged, unitDir string) error {
	if err := os.MkdirAll(filepath.Dir(unitDir), 0o755); err != nil { //nolint:gosec // G301: /etc/containers/systemd is world-readable
		return err
	}
	_, err := os.Lstat(unitDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Rename(staged, unitDir); err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		if err := exchange(staged, unitDir); err != nil {
			if !errors.Is(err, errNoExchange) {
				return fmt.Errorf("exchanging %s and %s: %w", staged, unitDir, err)
			}
			// A file system without RENAME_EXCHANGE: two renames, with a moment without
			// units in between (no reload runs then: reloads are this agent's, and serial).
			if err := os.Rename(unitDir, staged+".old"); err != nil {
				return err
			}
			if err := os.Rename(staged, unitDir); err != nil {
				_ = os.Rename(staged+".old", unitDir)
				return err
			}
			if err := os.Rename(staged+".old", staged); err != nil {
				return err
			}
		}
	}
	if err := syncDir(filepath.Dir(unitDir)); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(staged)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.RemoveAll(staged)
}

// writeConfigs writes the containers' config files; one already there with the same
// content is left as it is. Every path must lie under configDir.
func writeConfigs(configDir string, cs []quadlet.Config) error {
	for _, c := range cs {
		if _, err := configTop(configDir, c.Path); err != nil {
			return err
		}
		if old, err := os.ReadFile(c.Path); err == nil && bytes.Equal(old, c.Data) {
			continue
		}
		if err := writeFileAtomic(c.Path, c.Data, 0o644); err != nil {
			return fmt.Errorf("writing the config file %s: %w", c.Path, err)
		}
	}
	return nil
}

// configTop is the entry of configDir that holds path (its content-addressed directory).
func configTop(configDir, path string) (string, error) {
	rel, err := filepath.Rel(configDir, path)
	if err != nil || !filepath.IsAbs(path) || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("the config file %s is not under %s", path, configDir)
	}
	return strings.SplitN(rel, string(filepath.Separator), 2)[0], nil
}

// pruneConfigs removes the entries of configDir that none of keep's config files lie in.
func pruneConfigs(configDir string, keep ...[]quadlet.Config) error {
	k := map[string]bool{}
	for _, cs := range keep {
		for _, c := range cs {
			top, err := configTop(configDir, c.Path)
			if err != nil {
				return err
			}
			k[top] = true
		}
	}
	ents, err := os.ReadDir(configDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		if !k[e.Name()] {
			errs = append(errs, os.RemoveAll(filepath.Join(configDir, e.Name())))
		}
	}
	return errors.Join(errs...)
}

// writeOrRemove makes path hold data, or removes it when data is nil. It reports whether the
// file changed.
func writeOrRemove(path string, data []byte) (bool, error) {
	old, err := os.ReadFile(path)
	switch {
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return false, err
	case data == nil && err != nil:
		return false, nil
	case data == nil:
		if err := os.Remove(path); err != nil {
			return false, err
		}
		return true, syncDir(filepath.Dir(path))
	case err == nil && bytes.Equal(old, data):
		return false, nil
	}
	return true, writeFileAtomic(path, data, 0o644)
}

// errNoExchange says the file system (or the OS) cannot exchange two names atomically.
var errNoExchange = errors.New("no atomic exchange of names here")
