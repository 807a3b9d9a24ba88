package initramfs

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
)

// Firmware is one firmware file to carry under FirmwareDir.
type Firmware struct {
	// Path is where it goes under FirmwareDir: the name a module asks for (firmware=), with
	// .xz or .zst added when the package ships it compressed, as the kernel then looks for it.
	Path string
	Data []byte
}

// firmwareRoots are where Debian's firmware packages put their files: /lib/firmware before
// the /usr merge, /usr/lib/firmware after.
var firmwareRoots = []string{"lib/firmware/", "usr/lib/firmware/"}

// maxFirmware bounds one firmware file: the largest Debian ships are a few MiB.
const maxFirmware = 64 << 20

// FirmwareFromDebs takes the named firmware files (as modules name them in firmware=, e.g.
// "rtl_nic/rtl8168h-2.fw") out of Debian firmware packages (firmware-misc-nonfree and the
// like, .deb files), each from the first package that has it, uncompressed or as .zst or .xz
// as the package ships it (the kernel reads those itself). Symbolic links inside a package
// are followed. It returns what it found, sorted by path, and the names no package holds.
func FirmwareFromDebs(ctx context.Context, debs, names []string) ([]Firmware, []string, error) {
	found := map[string]Firmware{}
	for _, deb := range debs {
		var want []string
		for _, n := range names {
			if _, ok := found[n]; !ok && cleanRel(n) {
				want = append(want, n)
			}
		}
		if len(want) == 0 {
			break
		}
		got, err := firmwareFromDeb(ctx, deb, want)
		if err != nil {
			return nil, nil, err
		}
		for n, fw := range got {
			found[n] = fw
		}
	}
	var (
		out     []Firmware
		missing []string
	)
	for _, n := range slices.Compact(slices.Sorted(slices.Values(names))) {
		if fw, ok := found[n]; ok {
			out = append(out, fw)
		} else {
			missing = append(missing, n)
		}
	}
	slices.SortFunc(out, func(a, b Firmware) int { return strings.Compare(a.Path, b.Path) })
	return out, missing, nil
}

// firmwareFromDeb finds the wanted names in one package, following its symbolic links, which
// may need another pass over the package for their targets.
func firmwareFromDeb(ctx context.Context, deb string, want []string) (map[string]Firmware, error) {
	data := map[string][]byte{}  // path under the firmware root → content
	links := map[string]string{} // path under the firmware root → what it points to, likewise
	need := map[string]bool{}
	for _, n := range want {
		for _, c := range []string{n, n + ".zst", n + ".xz"} {
			need[c] = true
		}
	}
	for round := 0; round < 8 && len(need) > 0; round++ {
		err := walkDeb(ctx, deb, func(name string, h *tar.Header, r io.Reader) error {
			var rel string
			for _, root := range firmwareRoots {
				if strings.HasPrefix(name, root) {
					rel = strings.TrimPrefix(name, root)
				}
			}
			if rel == "" || !need[rel] {
				return nil
			}
			switch h.Typeflag {
			case tar.TypeReg:
				if h.Size > maxFirmware {
					return fmt.Errorf("%s: firmware %s is %d bytes, more than firmware ever is", deb, rel, h.Size)
				}
				b, err := io.ReadAll(r)
				if err != nil {
					return fmt.Errorf("%s: firmware %s: %w", deb, rel, err)
				}
				data[rel] = b
			case tar.TypeSymlink:
				target := h.Linkname
				if path.IsAbs(target) {
					target = strings.TrimPrefix(target, "/")
					for _, root := range firmwareRoots {
						target = strings.TrimPrefix(target, root)
					}
				} else {
					target = path.Join(path.Dir(rel), target)
				}
				if cleanRel(target) {
					links[rel] = target
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("reading firmware package %s: %w", deb, err)
		}
		// The next pass looks for the targets of the links this one found.
		next := map[string]bool{}
		for rel := range need {
			if t, ok := links[rel]; ok {
				if _, have := data[t]; !have {
					if _, isLink := links[t]; !isLink {
						next[t] = true
					}
				}
			}
		}
		need = next
	}
	out := map[string]Firmware{}
	for _, n := range want {
		for _, c := range []string{n, n + ".zst", n + ".xz"} {
			p := c
			for range 8 {
				t, ok := links[p]
				if !ok {
					break
				}
				p = t
			}
			if b, ok := data[p]; ok {
				// A compressed target keeps its ending: the kernel decompresses by name.
				out[n] = Firmware{Path: c + compressedSuffix(p, c), Data: b}
				break
			}
		}
	}
	return out, nil
}

// compressedSuffix is the ending to add to name so that it says how target is compressed,
// when the link name does not already.
func compressedSuffix(target, name string) string {
	for _, s := range []string{".zst", ".xz"} {
		if strings.HasSuffix(target, s) && !strings.HasSuffix(name, s) {
			return s
		}
	}
	return ""
}

// cleanRel reports whether p is a clean relative slash path that stays inside its root.
func cleanRel(p string) bool {
	return p != "" && path.Clean(p) == p && !path.IsAbs(p) && p != ".." && !strings.HasPrefix(p, "../")
}
