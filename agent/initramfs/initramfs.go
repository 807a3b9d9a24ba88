// Package initramfs writes the netboot agent's initramfs (decision 8): a gzip-compressed newc
// cpio archive whose /init is the static cairn-agent, with the kernel modules the agent loads
// before it can reach the network and the disks, a list of them in load order, the firmware
// those modules ask for, and /dev/console. It also defines that layout, which the agent reads
// at boot (package agent/netboot): the two sides agree through this package's constants, as
// do cairn build and the daemon on the names of the netboot artifacts.
//
// The modules come from the kernel the initramfs boots with. cairn build takes them from
// Debian's kernel package: UnpackKernel unpacks the .deb in pure Go (ar, then data.tar.xz or
// data.tar.zst), and Kernel.Resolve chooses the modules to carry and orders them, from what
// each module says of itself in its ELF .modinfo section (depends=, softdep=), as the package
// ships no modules.dep; FirmwareFromDebs takes the files the modules name in firmware= out of
// firmware packages. ModulesFromSquashfs takes modules, and what they depend on
// (modules.dep), from a root file system image such as the appliance base's
// filesystem.squashfs, whose kernel is the appliance's. The agent loads the modules
// compressed (.ko.xz, finit_module with MODULE_INIT_COMPRESSED_FILE), as the kernel
// decompresses them itself; the kernel reads the firmware from /lib/firmware by itself.
//
// It lives beside the agent rather than in package build because the layout is the agent's
// contract, which both sides must read the same way; package build calls Write when it makes
// the netboot artifacts of an [agent] table. It writes the same bytes for the same inputs
// (entries in a fixed order, one modification time, no owners), so that a build stays
// reproducible.
package initramfs

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The layout, as paths inside the initramfs (no leading slash).
const (
	// Init is the agent.
	Init = "init"
	// ModulesDir holds the modules, at their place under the kernel's tree:
	// lib/modules/VERSION/kernel/drivers/net/virtio_net.ko.xz.
	ModulesDir = "lib/modules"
	// LoadList lists the modules to load, in order, one a line, relative to ModulesDir
	// (VERSION/kernel/...). The first line's VERSION is the kernel the modules are for.
	LoadList = "lib/modules/cairn-agent.load"
	// FirmwareDir holds the firmware, where the kernel looks for it: lib/firmware/rtl_nic/...
	FirmwareDir = "lib/firmware"
)

// The netboot artifacts cairn build writes for the agent, by name: the daemon boots the kernel
// and the initramfs unless its configuration names others, and the agent binary is also
// carried alone, as a file, for hosts to fetch by digest.
const (
	KernelArtifact    = "vmlinuz"
	InitramfsArtifact = "cairn-agent.initramfs"
	AgentArtifact     = "cairn-agent"
)

// DefaultModules are the drivers the agent loads unless told otherwise: the network cards
// (virtio, Intel e1000 and e1000e), the disk controllers (virtio-blk, virtio-scsi with SCSI
// disks, NVMe, AHCI) of VMs and common servers, and virtio's random number generator, which
// seeds the kernel's at once in a VM whose CPU has no RDRAND (DHCP needs random numbers).
// The rest of what they need is built into Debian's kernel (virtio_pci, the PCI and block
// layers, the hardware RNG core).
var DefaultModules = []string{"virtio_net", "e1000", "e1000e", "virtio_blk", "virtio_scsi", "sd_mod", "nvme", "ahci", "virtio_rng"}

// ServerModules are the drivers of common server network cards (Intel igb, ixgbe, i40e and
// ice; Broadcom bnxt_en and tg3; Mellanox ConnectX-3 to 7; Realtek; VMware's vmxnet3) and disk
// controllers (Broadcom MegaRAID and SAS HBAs, HPE Smart Array, Microchip SmartPQI, VMware's
// paravirtual SCSI), all modules in Debian trixie's kernel. cairn build carries them beside
// DefaultModules unless build.toml lists its own.
var ServerModules = []string{
	"igb", "ixgbe", "i40e", "ice", "bnxt_en", "tg3", "mlx4_en", "mlx5_core", "r8169", "vmxnet3",
	"megaraid_sas", "mpt3sas", "hpsa", "smartpqi", "vmw_pvscsi",
}

// Module is one kernel module to carry.
type Module struct {
	// Path is its place under ModulesDir: VERSION/kernel/drivers/net/virtio_net.ko.xz.
	Path string
	// File is where it is on this machine.
	File string
}

// Config is what goes into the initramfs.
type Config struct {
	// Agent is the static cairn-agent binary (CGO_ENABLED=0), which becomes /init.
	Agent string
	// Modules, in load order (dependencies first).
	Modules []Module
	// Firmware goes under FirmwareDir, sorted by path.
	Firmware []Firmware
	// ModTime is every entry's modification time; the zero time means the Unix epoch.
	ModTime time.Time
}

// Write writes the initramfs to w.
func Write(w io.Writer, cfg Config) error {
	if cfg.Agent == "" {
		return errors.New("initramfs: no agent binary to make /init")
	}
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	cw := &newc{w: zw, mtime: cfg.ModTime.Unix()}
	if cfg.ModTime.IsZero() {
		cw.mtime = 0
	}
	dirs := map[string]bool{}
	mkdirs := func(p string) {
		var parents []string
		for d := path.Dir(p); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			parents = append(parents, d)
		}
		slices.Reverse(parents)
		for _, d := range parents {
			cw.dir(d)
		}
	}
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp"} {
		mkdirs(d + "/x")
	}
	cw.charDev("dev/console", 0o600, 5, 1)
	agent, err := os.ReadFile(cfg.Agent)
	if err != nil {
		return fmt.Errorf("initramfs: reading the agent: %w", err)
	}
	cw.file(Init, 0o755, agent)

	var list strings.Builder
	seen := map[string]bool{}
	for _, m := range cfg.Modules {
		p := path.Clean(m.Path)
		if p != m.Path || strings.HasPrefix(p, "../") || path.IsAbs(p) || !strings.Contains(p, "/kernel/") {
			return fmt.Errorf("initramfs: module path %q: expected VERSION/kernel/.../NAME.ko.xz", m.Path)
		}
		if seen[p] {
			continue
		}
		seen[p] = true
		b, err := os.ReadFile(m.File)
		if err != nil {
			return fmt.Errorf("initramfs: module %s: %w", p, err)
		}
		full := ModulesDir + "/" + p
		mkdirs(full)
		cw.file(full, 0o644, b)
		list.WriteString(p + "\n")
	}
	fws := slices.Clone(cfg.Firmware)
	slices.SortFunc(fws, func(a, b Firmware) int { return strings.Compare(a.Path, b.Path) })
	for i, fw := range fws {
		if !cleanRel(fw.Path) {
			return fmt.Errorf("initramfs: firmware path %q: expected a relative path such as rtl_nic/rtl8168h-2.fw", fw.Path)
		}
		if i > 0 && fws[i-1].Path == fw.Path {
			continue
		}
		full := FirmwareDir + "/" + fw.Path
		mkdirs(full)
		cw.file(full, 0o644, fw.Data)
	}
	mkdirs(LoadList)
	cw.file(LoadList, 0o644, []byte(list.String()))
	cw.end()
	if cw.err != nil {
		return fmt.Errorf("initramfs: %w", cw.err)
	}
	return zw.Close()
}

// newc writes the "new ASCII" cpio format the kernel unpacks (070701, no checksums).
type newc struct {
	w     io.Writer
	mtime int64
	ino   int64
	err   error
}

func (c *newc) header(name string, mode uint32, size int64, rdevMajor, rdevMinor int64) {
	if c.err != nil {
		return
	}
	ino, nlink, mtime := int64(0), int64(1), c.mtime
	switch {
	case name == trailer:
		nlink, mtime = 0, 0
	case mode&0o170000 == 0o040000:
		nlink = 2
	}
	if name != trailer {
		c.ino++
		ino = c.ino
	}
	h := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, mtime, size, 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	c.write([]byte(h + name + "\x00"))
	c.pad(int64(len(h) + len(name) + 1))
}

func (c *newc) write(b []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(b)
	}
}

func (c *newc) pad(n int64) {
	if r := n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

func (c *newc) dir(name string) { c.header(name, 0o040755, 0, 0, 0) }

func (c *newc) charDev(name string, perm uint32, major, minor int64) {
	c.header(name, 0o020000|perm, 0, major, minor)
}

func (c *newc) file(name string, perm uint32, b []byte) {
	c.header(name, 0o100000|perm, int64(len(b)), 0, 0)
	c.write(b)
	c.pad(int64(len(b)))
}

// trailer is the name of the entry that ends the archive.
const trailer = "TRAILER!!!"

func (c *newc) end() { c.header(trailer, 0, 0, 0, 0) }

// ResolveModules reads a kernel's modules.dep and returns the paths of the named modules and of
// everything they depend on, each after its dependencies, each once. Names are module names
// (virtio_net; "-" and "_" are the same, as modprobe takes them). A name modules.dep does not
// know is an error that lists it: it may be built into the kernel (modules.builtin), or
// misspelt.
func ResolveModules(dep io.Reader, names []string) ([]string, error) {
	deps := map[string][]string{} // path → its dependencies' paths
	byName := map[string]string{} // module name → path
	s := bufio.NewScanner(dep)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		mod, rest, ok := strings.Cut(s.Text(), ":")
		if !ok {
			continue
		}
		mod = strings.TrimSpace(mod)
		deps[mod] = strings.Fields(rest)
		byName[ModuleName(mod)] = mod
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("reading modules.dep: %w", err)
	}
	var (
		order   []string
		done    = map[string]bool{}
		unknown []string
	)
	var visit func(p string, depth int) error
	visit = func(p string, depth int) error {
		if done[p] {
			return nil
		}
		if depth > 64 {
			return fmt.Errorf("modules.dep: a dependency loop through %s", p)
		}
		for _, d := range deps[p] {
			if err := visit(d, depth+1); err != nil {
				return err
			}
		}
		done[p] = true
		order = append(order, p)
		return nil
	}
	for _, n := range names {
		p, ok := byName[ModuleName(n)]
		if !ok {
			unknown = append(unknown, n)
			continue
		}
		if err := visit(p, 0); err != nil {
			return nil, err
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("modules.dep has no module %s (built into the kernel, see modules.builtin, or misspelt?)", strings.Join(unknown, ", "))
	}
	return order, nil
}

// ModuleName is the name of the module at p (kernel/drivers/net/virtio_net.ko.xz →
// virtio_net), with "-" written "_" as the kernel does.
func ModuleName(p string) string {
	base := path.Base(p)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// ModulesFromSquashfs extracts the named modules, and the modules they depend on, of the kernel
// installed in a root file system image (usr/lib/modules/VERSION, such as the appliance base's
// filesystem.squashfs) into dir, with unsquashfs (Debian package squashfs-tools). It returns
// them in load order. The image must hold one kernel.
func ModulesFromSquashfs(ctx context.Context, squashfs, dir string, names []string) ([]Module, error) {
	if _, err := exec.LookPath("unsquashfs"); err != nil {
		return nil, errors.New("initramfs: unsquashfs is not installed (Debian package squashfs-tools; scripts/deps.sh installs it)")
	}
	const modRoot = "usr/lib/modules"
	if err := unsquashfs(ctx, squashfs, dir, modRoot+"/*/modules.dep"); err != nil {
		return nil, err
	}
	versions, _ := filepath.Glob(filepath.Join(dir, modRoot, "*", "modules.dep"))
	switch len(versions) {
	case 0:
		return nil, fmt.Errorf("initramfs: %s has no kernel modules (no %s/*/modules.dep)", squashfs, modRoot)
	case 1:
	default:
		return nil, fmt.Errorf("initramfs: %s holds %d kernels' modules; the netboot kernel's must be the only ones", squashfs, len(versions))
	}
	version := filepath.Base(filepath.Dir(versions[0]))
	f, err := os.Open(versions[0])
	if err != nil {
		return nil, err
	}
	paths, err := ResolveModules(f, names)
	_ = f.Close()
	if err != nil {
		return nil, fmt.Errorf("initramfs: kernel %s: %w", version, err)
	}
	want := make([]string, len(paths))
	for i, p := range paths {
		want[i] = modRoot + "/" + version + "/" + p
	}
	if err := unsquashfs(ctx, squashfs, dir, want...); err != nil {
		return nil, err
	}
	mods := make([]Module, len(paths))
	for i, p := range paths {
		mods[i] = Module{Path: version + "/" + p, File: filepath.Join(dir, filepath.FromSlash(want[i]))}
		if _, err := os.Stat(mods[i].File); err != nil {
			return nil, fmt.Errorf("initramfs: %s lists %s, but %s does not hold it", "modules.dep", p, squashfs)
		}
	}
	return mods, nil
}

func unsquashfs(ctx context.Context, image, dir string, paths ...string) error {
	args := append([]string{"-n", "-no-xattrs", "-f", "-d", dir, image}, paths...)
	out, err := exec.CommandContext(ctx, "unsquashfs", args...).CombinedOutput() //nolint:gosec // G204: our own arguments
	if err != nil {
		return fmt.Errorf("initramfs: unsquashfs %s: %w\n%s", image, err, strings.TrimSpace(string(out)))
	}
	return nil
}
