package initramfs

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Kernel is a Debian kernel package (linux-image-VERSION) unpacked by UnpackKernel: the kernel
// image and the module tree, laid out as on an installed system (boot/vmlinuz-VERSION,
// lib/modules/VERSION/kernel/..., modules.builtin, modules.order), so that depmod -b reads it
// too.
type Kernel struct {
	// Version is the kernel release the modules are for: 6.12.117+deb13-amd64.
	Version string
	// Dir holds the unpacked tree.
	Dir string

	byName  map[string]string // module name → its path under ModulesDir (kernel/...)
	builtin map[string]bool   // names of the modules built into the kernel
}

// Vmlinuz is the kernel image.
func (k *Kernel) Vmlinuz() string { return filepath.Join(k.Dir, "boot", "vmlinuz-"+k.Version) }

// ModulesDir is lib/modules/VERSION of the tree.
func (k *Kernel) ModulesDir() string { return filepath.Join(k.Dir, "lib", "modules", k.Version) }

// moduleSuffixes are the endings of module files, compressed as Debian ships them or not.
var moduleSuffixes = []string{".ko.xz", ".ko.zst", ".ko"}

func isModule(name string) bool {
	return slices.ContainsFunc(moduleSuffixes, func(s string) bool { return strings.HasSuffix(name, s) })
}

// UnpackKernel unpacks the kernel image and the modules of a Debian kernel package (a .deb
// such as linux-image-6.12.117+deb13-amd64_6.12.117-1_amd64.deb) into dir, in pure Go, and
// opens the result. A dir that already holds the unpacked package is opened as it is, so that
// dir can be a cache keyed by the package's digest; the tree appears at dir only complete
// (it is written beside it and renamed).
func UnpackKernel(ctx context.Context, deb, dir string) (*Kernel, error) {
	if k, err := OpenKernel(dir); err == nil {
		return k, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil { //nolint:gosec // public files
		return nil, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".unpack-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	versions := map[string]bool{}
	kernels := map[string]bool{}
	err = walkDeb(ctx, deb, func(name string, h *tar.Header, r io.Reader) error {
		if h.Typeflag != tar.TypeReg {
			return nil
		}
		var dst string
		switch {
		case strings.HasPrefix(name, "boot/vmlinuz-") && !strings.Contains(name[len("boot/"):], "/"):
			kernels[strings.TrimPrefix(name, "boot/vmlinuz-")] = true
			dst = name
		case strings.HasPrefix(name, "usr/lib/modules/"), strings.HasPrefix(name, "lib/modules/"):
			rest := strings.TrimPrefix(strings.TrimPrefix(name, "usr/"), "lib/modules/")
			version, file, ok := strings.Cut(rest, "/")
			if !ok || !(strings.HasPrefix(file, "kernel/") && isModule(file) || file == "modules.builtin" || file == "modules.order" || file == "modules.builtin.modinfo") {
				return nil
			}
			versions[version] = true
			dst = "lib/modules/" + version + "/" + file
		default:
			return nil
		}
		return writeFile(filepath.Join(tmp, filepath.FromSlash(dst)), r)
	})
	if err != nil {
		return nil, fmt.Errorf("unpacking kernel package %s: %w", deb, err)
	}
	var version string
	switch len(versions) {
	case 0:
		return nil, fmt.Errorf("kernel package %s holds no modules (no usr/lib/modules/VERSION/kernel/): expected Debian's linux-image-VERSION package, not the linux-image-amd64 meta-package", deb)
	case 1:
		for v := range versions {
			version = v
		}
	default:
		return nil, fmt.Errorf("kernel package %s holds modules of %d kernels (%s): expected one", deb, len(versions), strings.Join(slices.Sorted(maps.Keys(versions)), ", "))
	}
	if !kernels[version] {
		return nil, fmt.Errorf("kernel package %s has modules for %s but no boot/vmlinuz-%s", deb, version, version)
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another build unpacked the same package at the same time: use its tree.
		if k, oerr := OpenKernel(dir); oerr == nil {
			return k, nil
		}
		return nil, fmt.Errorf("unpacking kernel package %s: %w", deb, err)
	}
	return OpenKernel(dir)
}

func writeFile(p string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil { //nolint:gosec // public files
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644) //nolint:gosec // public files
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// OpenKernel opens a tree UnpackKernel wrote: one lib/modules/VERSION and its
// boot/vmlinuz-VERSION.
func OpenKernel(dir string) (*Kernel, error) {
	ents, err := os.ReadDir(filepath.Join(dir, "lib", "modules"))
	if err != nil {
		return nil, err
	}
	if len(ents) != 1 || !ents[0].IsDir() {
		return nil, fmt.Errorf("%s: expected one lib/modules/VERSION", dir)
	}
	k := &Kernel{Version: ents[0].Name(), Dir: dir, byName: map[string]string{}, builtin: map[string]bool{}}
	if _, err := os.Stat(k.Vmlinuz()); err != nil {
		return nil, err
	}
	root := k.ModulesDir()
	err = filepath.WalkDir(filepath.Join(root, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !isModule(d.Name()) {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		name := ModuleName(rel)
		if _, dup := k.byName[name]; !dup { // WalkDir goes in lexical order: the first one wins
			k.byName[name] = filepath.ToSlash(rel)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if b, err := os.ReadFile(filepath.Join(root, "modules.builtin")); err == nil {
		for _, line := range strings.Fields(string(b)) {
			k.builtin[ModuleName(line)] = true
		}
	}
	return k, nil
}

// ModInfo is what a module says of itself in its .modinfo section.
type ModInfo struct {
	Depends  []string // modules it needs loaded first (depends=), by name
	SoftPre  []string // modules modprobe loads before it (softdep=pre:), by name or alias
	SoftPost []string // and after it (softdep=post:)
	Firmware []string // firmware files it may ask for (firmware=), under /lib/firmware
}

// ReadModInfo reads the .modinfo section of a module file: an ELF object, or one compressed
// with xz or zstd as its name says (.ko.xz, .ko.zst). It decompresses it in memory.
func ReadModInfo(file string) (ModInfo, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return ModInfo{}, err
	}
	switch {
	case strings.HasSuffix(file, ".xz"):
		xr, err := xz.NewReader(bytes.NewReader(b))
		if err != nil {
			return ModInfo{}, fmt.Errorf("module %s: %w", file, err)
		}
		if b, err = io.ReadAll(xr); err != nil {
			return ModInfo{}, fmt.Errorf("module %s: %w", file, err)
		}
	case strings.HasSuffix(file, ".zst"):
		zr, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return ModInfo{}, err
		}
		b, err = zr.DecodeAll(b, nil)
		zr.Close()
		if err != nil {
			return ModInfo{}, fmt.Errorf("module %s: %w", file, err)
		}
	}
	ef, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return ModInfo{}, fmt.Errorf("module %s: %w", file, err)
	}
	s := ef.Section(".modinfo")
	if s == nil {
		return ModInfo{}, fmt.Errorf("module %s has no .modinfo section", file)
	}
	data, err := s.Data()
	if err != nil {
		return ModInfo{}, fmt.Errorf("module %s: .modinfo: %w", file, err)
	}
	return parseModInfo(data), nil
}

// parseModInfo reads the NUL-separated key=value strings of a .modinfo section.
func parseModInfo(data []byte) ModInfo {
	var mi ModInfo
	for _, kv := range strings.Split(string(data), "\x00") {
		key, value, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		switch key {
		case "depends":
			for _, d := range strings.Split(value, ",") {
				if d = strings.TrimSpace(d); d != "" {
					mi.Depends = append(mi.Depends, d)
				}
			}
		case "softdep":
			var into *[]string
			for _, w := range strings.Fields(value) {
				switch w {
				case "pre:":
					into = &mi.SoftPre
				case "post:":
					into = &mi.SoftPost
				default:
					if into != nil {
						*into = append(*into, w)
					}
				}
			}
		case "firmware":
			if value != "" {
				mi.Firmware = append(mi.Firmware, value)
			}
		}
	}
	return mi
}

// Selection is what Resolve chose to carry.
type Selection struct {
	// Modules to load, in order: each after what it depends on.
	Modules []Module
	// Firmware lists the files the modules may ask for (firmware=), sorted, each once.
	Firmware []string
	// Builtin lists the names asked for that are built into the kernel: there is nothing to
	// carry for them.
	Builtin []string
	// Missing lists the names asked for that the kernel lacks, when Resolve was told to skip
	// them.
	Missing []string
}

// MissingModulesError is returned by Resolve for names the kernel has neither as a module
// nor built in.
type MissingModulesError struct {
	Version string
	Names   []string
}

func (e *MissingModulesError) Error() string {
	return fmt.Sprintf("kernel %s has no module %s, neither as a file nor built in (modules.builtin): check the spelling (modinfo NAME on a machine running this kernel)",
		e.Version, strings.Join(e.Names, ", "))
}

// Resolve chooses the modules to carry for the named ones ("-" and "_" are the same, as
// modprobe takes them): each with what it depends on (depends=, read from the modules
// themselves) and what modprobe loads before and after it (softdep=, when the kernel has it
// as a module), each once, dependencies first. A name the kernel lacks is a
// *MissingModulesError, or, with skipMissing, listed in Selection.Missing.
func (k *Kernel) Resolve(names []string, skipMissing bool) (*Selection, error) {
	sel := &Selection{}
	var (
		done     = map[string]bool{}
		visiting = map[string]bool{}
		firmware = map[string]bool{}
		missing  []string
	)
	var visit func(name, from string, soft bool) error
	visit = func(name, from string, soft bool) error {
		n := strings.ReplaceAll(name, "-", "_")
		if done[n] || soft && visiting[n] {
			return nil
		}
		if visiting[n] {
			return fmt.Errorf("kernel %s: modules depend on each other in a loop through %s", k.Version, n)
		}
		p, ok := k.byName[n]
		if !ok {
			if soft || k.builtin[n] {
				return nil
			}
			return fmt.Errorf("kernel %s: module %s depends on %s, which the kernel has neither as a file nor built in", k.Version, from, n)
		}
		info, err := ReadModInfo(filepath.Join(k.ModulesDir(), filepath.FromSlash(p)))
		if err != nil {
			return fmt.Errorf("kernel %s: %w", k.Version, err)
		}
		visiting[n] = true
		for _, d := range info.SoftPre {
			if err := visit(d, n, true); err != nil {
				return err
			}
		}
		for _, d := range info.Depends {
			if err := visit(d, n, false); err != nil {
				return err
			}
		}
		visiting[n], done[n] = false, true
		sel.Modules = append(sel.Modules, Module{Path: k.Version + "/" + p, File: filepath.Join(k.ModulesDir(), filepath.FromSlash(p))})
		for _, fw := range info.Firmware {
			firmware[fw] = true
		}
		for _, d := range info.SoftPost {
			if err := visit(d, n, true); err != nil {
				return err
			}
		}
		return nil
	}
	for _, name := range names {
		n := strings.ReplaceAll(name, "-", "_")
		if _, ok := k.byName[n]; !ok {
			switch {
			case k.builtin[n]:
				sel.Builtin = append(sel.Builtin, name)
			case skipMissing:
				sel.Missing = append(sel.Missing, name)
			default:
				missing = append(missing, name)
			}
			continue
		}
		if err := visit(name, "", false); err != nil {
			return nil, err
		}
	}
	if len(missing) > 0 {
		return nil, &MissingModulesError{Version: k.Version, Names: missing}
	}
	sel.Firmware = slices.Sorted(maps.Keys(firmware))
	return sel, nil
}

// ModulesFromDeb unpacks a Debian kernel package into dir (see UnpackKernel) and returns the
// named modules and what they depend on, in load order, with the kernel's version.
func ModulesFromDeb(ctx context.Context, deb, dir string, names []string) ([]Module, string, error) {
	k, err := UnpackKernel(ctx, deb, dir)
	if err != nil {
		return nil, "", err
	}
	sel, err := k.Resolve(names, false)
	if err != nil {
		return nil, k.Version, err
	}
	return sel.Modules, k.Version, nil
}
