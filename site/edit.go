package site

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/cairn-appliance/cairn/site/tomlpos"
)

// RaiseProvision raises the provision counter of the host name in the site directory dir by
// one, which asks the daemon to provision it again (its disk is written again). It is the one
// edit cairn makes to a site, and it touches only the value: comments, layout and every other
// key stay as they were, byte for byte; a file that does not set provision gets
// "provision = 1" as its first line.
//
// The site must load before the edit and still load after it; when it does not, the file is
// put back as it was. The file is replaced atomically through a hidden temporary file beside
// it (which Load and the daemon's watcher pass over), keeping its mode; a host file that is a
// symlink stays one and its target is edited. It returns the new value and the file written.
func RaiseProvision(dir, name string) (n int, file string, err error) {
	s, err := Load(dir)
	if err != nil {
		return 0, "", fmt.Errorf("the site %s does not load, fix it first (cairn site validate %s):\n%w", dir, dir, err)
	}
	var host *Host
	for _, h := range s.Hosts {
		if h.Name == name {
			host = h
		}
	}
	if host == nil {
		return 0, "", fmt.Errorf("the site %s has no host %q", dir, name)
	}
	file = filepath.Join(dir, filepath.FromSlash(host.File))
	real, err := filepath.EvalSymlinks(file)
	if err != nil {
		return 0, "", err
	}
	info, err := os.Stat(real)
	if err != nil {
		return 0, "", err
	}
	src, err := os.ReadFile(real)
	if err != nil {
		return 0, "", err
	}
	n = host.Provision + 1
	out, err := withProvision(host.File, src, n)
	if err != nil {
		return 0, "", err
	}
	if err := replaceFile(real, out, info.Mode().Perm()); err != nil {
		return 0, "", fmt.Errorf("writing %s: %w", file, err)
	}
	if _, err := Load(dir); err != nil {
		if rerr := replaceFile(real, src, info.Mode().Perm()); rerr != nil {
			return 0, "", fmt.Errorf("raising provision broke the site, and putting %s back failed (%w): %w", file, rerr, err)
		}
		return 0, "", fmt.Errorf("raising provision broke the site, left as it was: %w", err)
	}
	return n, file, nil
}

// withProvision returns the host file src (named file in errors) with provision set to n.
func withProvision(file string, src []byte, n int) ([]byte, error) {
	doc, perr := tomlpos.Parse(file, src)
	if perr != nil {
		return nil, perr
	}
	off, ok := doc.ValueOffset("provision")
	if !ok {
		return append([]byte(fmt.Sprintf("provision = %d\n", n)), src...), nil
	}
	// The value is one integer token (1, +1, 1_000, 0x10 …); it ends at a blank, a comment
	// or the end of the line.
	end := off
	for end < len(src) && isIntByte(src[end]) {
		end++
	}
	out := make([]byte, 0, len(src)+4)
	out = append(out, src[:off]...)
	out = strconv.AppendInt(out, int64(n), 10)
	return append(out, src[end:]...), nil
}

func isIntByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '+' || c == '-'
}

// tempPattern is the os.CreateTemp pattern of the temporary file that replaces the file base:
// hidden (".a.toml.123.cairn-tmp"), so that neither Load nor the daemon's watcher take it for a
// site file while it is being written. base is a file Load listed, so it starts with no ".".
func tempPattern(base string) string { return "." + base + ".*.cairn-tmp" }

// replaceFile writes data to path atomically and durably: into a hidden temporary file in the
// same directory, with mode perm, synced, renamed over path, and the directory synced.
func replaceFile(path string, data []byte, perm os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), tempPattern(filepath.Base(path)))
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(f.Name())
		}
	}()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	// The rename is durable only once the directory is synced: without it, a power cut soon
	// after could bring the old file back while the daemon has applied the new one.
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
