package disk

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cairn-appliance/cairn/agent/api"
)

// Selectors, besides a device path, that a plan's disk may be.
const (
	FirstNonRemovable = "first-nonremovable"
	Largest           = "largest"
	Smallest          = "smallest"
)

// Select picks the disk spec names among disks (the inventory's, in kernel order), and
// checks it holds need bytes. spec is a device path or a selector:
//
//   - a path (/dev/vda, /dev/disk/by-id/..., /dev/disk/by-path/...): the disk whose Path,
//     ByID or ByPath it is, or whose device it leads to through symbolic links;
//   - first-nonremovable: the first disk that is not removable;
//   - largest, smallest: among the disks that are not removable, the first in kernel order
//     on a tie; a removable disk (a USB stick) is chosen only by path, serial, WWN or model;
//   - serial:X, wwn:X, model:X: the first disk whose serial number, WWN or model is X
//     (model exact; a WWN with or without 0x, in either case).
//
// Disks of size 0 (a card reader without a card) are never chosen by a selector. A disk
// smaller than need is refused with an error that names it, its size and the need; when no
// disk matches, the error lists the disks seen.
func Select(spec string, disks []api.Disk, need uint64) (api.Disk, error) {
	return SelectIn("/", spec, disks, need)
}

// SelectIn is Select with device paths resolved under root instead of /: root/dev/disk/...
// (tests use a fake /dev tree). Links are followed within root, absolute ones too.
func SelectIn(root, spec string, disks []api.Disk, need uint64) (api.Disk, error) {
	spec = strings.TrimSpace(spec)
	found, ok := -1, true
	hint := ""
	kind, arg, _ := strings.Cut(spec, ":")
	switch {
	case spec == "":
		return api.Disk{}, fmt.Errorf("selecting the disk: the plan names none: set the host's disk to a device path (/dev/disk/by-id/...) or a selector (%s)", selectors)
	case strings.HasPrefix(spec, "/"):
		found, hint = byPath(root, spec, disks)
	case spec == FirstNonRemovable:
		for i, d := range disks {
			if !d.Removable && d.SizeBytes > 0 {
				found = i
				break
			}
		}
	case spec == Largest || spec == Smallest:
		for i, d := range disks {
			if d.Removable || d.SizeBytes == 0 {
				continue
			}
			if found < 0 || (spec == Largest && d.SizeBytes > disks[found].SizeBytes) || (spec == Smallest && d.SizeBytes < disks[found].SizeBytes) {
				found = i
			}
		}
	case kind == "serial" || kind == "wwn" || kind == "model":
		arg = strings.TrimSpace(arg)
		if arg == "" {
			return api.Disk{}, fmt.Errorf("selecting the disk: %q names no %s: write %s:VALUE", spec, kind, kind)
		}
		for i, d := range disks {
			var match bool
			switch kind {
			case "serial":
				match = strings.TrimSpace(d.Serial) == arg
			case "model":
				match = strings.TrimSpace(d.Model) == arg
			case "wwn":
				match = d.WWN != "" && strings.EqualFold(strings.TrimPrefix(strings.ToLower(d.WWN), "0x"), strings.TrimPrefix(strings.ToLower(arg), "0x"))
			}
			if match {
				found = i
				break
			}
		}
	default:
		ok = false
	}
	if !ok {
		return api.Disk{}, fmt.Errorf("selecting the disk: %q is neither a device path (starting with /dev/) nor a selector (%s): fix the host's disk", spec, selectors)
	}
	if found < 0 {
		return api.Disk{}, fmt.Errorf("selecting the disk: no disk matches %q%s; the disks seen are %s: fix the host's disk in the site", spec, hint, list(disks))
	}
	d := disks[found]
	if d.SizeBytes < need {
		return api.Disk{}, fmt.Errorf("selecting the disk: disk %s (%s, %q) is %s, smaller than the %s the image and partitions need: choose a larger disk, or a smaller image", d.Name, d.Path, spec, size(int64(d.SizeBytes)), size(int64(need)))
	}
	return d, nil
}

const selectors = FirstNonRemovable + ", " + Largest + ", " + Smallest + ", serial:X, wwn:X, model:X"

func list(disks []api.Disk) string {
	if len(disks) == 0 {
		return "none (the machine has no disk the agent can write: check its controller's driver)"
	}
	var b strings.Builder
	for i, d := range disks {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s %s model %q serial %q", d.Name, size(int64(d.SizeBytes)), d.Model, d.Serial)
		if d.WWN != "" {
			fmt.Fprintf(&b, " wwn %q", d.WWN)
		}
		if d.Removable {
			b.WriteString(" removable")
		}
	}
	return b.String()
}

// byPath finds the disk a path names, by its names first, then by where it leads.
func byPath(root, spec string, disks []api.Disk) (int, string) {
	spec = filepath.Clean(spec)
	for i, d := range disks {
		if d.Path == spec || d.ByPath == spec {
			return i, ""
		}
		for _, id := range d.ByID {
			if id == spec {
				return i, ""
			}
		}
	}
	dev, err := resolve(root, spec)
	if err != nil {
		return -1, fmt.Sprintf(" (%v)", err)
	}
	for i, d := range disks {
		if (d.Path != "" && filepath.Clean(d.Path) == dev) || (d.Name != "" && "/dev/"+d.Name == dev) {
			return i, ""
		}
	}
	if dev != spec {
		return -1, fmt.Sprintf(" (it leads to %s, which is no whole disk of the inventory)", dev)
	}
	return -1, ""
}

// resolve follows the symbolic links of p, a clean absolute path, inside root, and returns
// the path it leads to (without root).
func resolve(root, p string) (string, error) {
	done := "/"
	rest := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for links := 0; len(rest) > 0; {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			done = filepath.Dir(done)
			continue
		}
		next := filepath.Join(done, c)
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			return "", fmt.Errorf("%s does not exist", p)
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			done = next
			continue
		}
		if links++; links > 40 {
			return "", fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", fmt.Errorf("reading the link %s: %w", next, err)
		}
		if strings.HasPrefix(target, "/") {
			done = "/"
		}
		rest = append(strings.Split(strings.TrimPrefix(target, "/"), "/"), rest...)
	}
	return done, nil
}
