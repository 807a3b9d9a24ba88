// Package inventory describes the machine the agent runs on, as the agent API's Inventory
// (package agent/api): its network cards, its disks, its firmware (BIOS or UEFI), its CPUs and
// its memory, and its DMI identity. It reads sysfs and procfs only, under a root that tests
// point at a fake tree; it writes nothing and needs no udev.
//
// Disks are the block devices that can hold an OS: those backed by a device (not loop, ram,
// zram or device-mapper), CD-ROMs and floppies left out, in kernel order (sorted by name).
// Their /dev/disk/by-id names are read from /dev/disk/by-id when udev made it. Without udev
// (the netboot initramfs has none) they are derived from sysfs as udev's
// 60-persistent-storage rules name them, for the buses where that needs no more than sysfs:
// virtio-blk (virtio-SERIAL) and NVMe (nvme-MODEL_SERIAL, nvme-WWID). SCSI and ATA disks get
// none then (udev asks the disk itself, through scsi_id and ata_id), nor does a disk without
// a serial number; by-path is derived for virtio-blk only (pci-ADDRESS). A site then names
// such a disk by selector (first-nonremovable, serial:...) rather than by path.
package inventory

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/cairn-appliance/cairn/agent/api"
)

// Config says where to look.
type Config struct {
	// Root is where /sys, /proc and /dev are; empty means "/".
	Root string
	// MAC is the address the machine booted from (Inventory.MAC).
	MAC string
	// Addrs lists an interface's addresses (CIDR); nil means the running system's
	// (net.InterfaceByName), which a fake Root does not have.
	Addrs func(name string) []string
	// AgentVersion goes into Inventory.AgentVersion.
	AgentVersion string
}

// Collect reads the inventory. It fails only when there is no sysfs to read; an attribute
// that cannot be read is left empty.
func Collect(cfg Config) (api.Inventory, error) {
	if cfg.Root == "" {
		cfg.Root = "/"
	}
	if cfg.Addrs == nil {
		cfg.Addrs = systemAddrs
	}
	r := reader{root: cfg.Root}
	if _, err := os.Stat(r.path("sys/class")); err != nil {
		return api.Inventory{}, fmt.Errorf("inventory: no sysfs at %s: %w", r.path("sys"), err)
	}
	inv := api.Inventory{MAC: cfg.MAC, Firmware: api.BIOS, AgentVersion: cfg.AgentVersion}
	if _, err := os.Stat(r.path("sys/firmware/efi")); err == nil {
		inv.Firmware = api.UEFI
	}
	inv.NICs = r.nics(cfg.Addrs)
	inv.Disks = r.disks()
	inv.CPU = r.cpu()
	inv.MemoryBytes = r.memory()
	inv.System = api.System{
		Vendor:  r.attr("sys/class/dmi/id/sys_vendor"),
		Product: r.attr("sys/class/dmi/id/product_name"),
		Serial:  r.attr("sys/class/dmi/id/product_serial"),
		UUID:    r.attr("sys/class/dmi/id/product_uuid"),
	}
	return inv, nil
}

type reader struct{ root string }

func (r reader) path(p string) string { return filepath.Join(r.root, p) }

// attr reads a sysfs attribute, trimmed; "" when it cannot be read.
func (r reader) attr(p string) string {
	b, err := os.ReadFile(r.path(p))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func (r reader) uintAttr(p string) (uint64, bool) {
	v, err := strconv.ParseUint(r.attr(p), 10, 64)
	return v, err == nil
}

// entries lists a directory's names, sorted; none when it cannot be read.
func (r reader) entries(p string) []string {
	es, err := os.ReadDir(r.path(p))
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(es))
	for _, e := range es {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

// nics are the interfaces backed by a device (sysfs "device" link): no loopback, bridge,
// bond or tunnel.
func (r reader) nics(addrs func(string) []string) []api.NIC {
	var out []api.NIC
	for _, name := range r.entries("sys/class/net") {
		dir := "sys/class/net/" + name
		if _, err := os.Stat(r.path(dir + "/device")); err != nil {
			continue
		}
		n := api.NIC{Name: name, MAC: r.attr(dir + "/address"), Carrier: r.attr(dir+"/carrier") == "1"}
		if hw, err := net.ParseMAC(n.MAC); err == nil {
			n.MAC = hw.String()
		}
		if drv, err := os.Readlink(r.path(dir + "/device/driver")); err == nil {
			n.Driver = filepath.Base(drv)
		}
		if s, err := strconv.Atoi(r.attr(dir + "/speed")); err == nil && s > 0 {
			n.SpeedMbps = s
		}
		n.Addresses = addrs(name)
		out = append(out, n)
	}
	return out
}

func systemAddrs(name string) []string {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil
	}
	as, err := ifi.Addrs()
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range as {
		if p, ok := a.(*net.IPNet); ok && !p.IP.IsLinkLocalUnicast() {
			out = append(out, p.String())
		}
	}
	return out
}

// notDisk names the block devices that never hold an OS.
var notDisk = regexp.MustCompile(`^(loop|ram|zram|dm-|md|sr|fd|nbd)`)

func (r reader) disks() []api.Disk {
	var out []api.Disk
	for _, name := range r.entries("sys/block") {
		dir := "sys/block/" + name
		if notDisk.MatchString(name) {
			continue
		}
		if _, err := os.Stat(r.path(dir + "/device")); err != nil {
			continue // virtual
		}
		if r.attr(dir+"/device/type") == "5" {
			continue // a SCSI CD-ROM that is not named sr
		}
		sectors, _ := r.uintAttr(dir + "/size") // 512-byte sectors, whatever the disk's own
		d := api.Disk{Name: name, Path: "/dev/" + name, SizeBytes: sectors * 512,
			Removable: r.attr(dir+"/removable") == "1", Rotational: r.attr(dir+"/queue/rotational") == "1"}
		r.identify(&d, dir)
		if links := r.udevLinks(name, "by-id"); links != nil {
			d.ByID = links
		} else {
			d.ByID = deriveByID(d)
		}
		if links := r.udevLinks(name, "by-path"); links == nil {
			d.ByPath = r.deriveByPath(name, dir)
		} else if len(links) > 0 {
			d.ByPath = links[0]
		}
		out = append(out, d)
	}
	return out
}

// identify fills in the model, serial and WWN, from wherever the disk's driver puts them.
func (r reader) identify(d *api.Disk, dir string) {
	switch {
	case strings.HasPrefix(d.Name, "vd"):
		d.Serial = r.attr(dir + "/serial")
	case strings.HasPrefix(d.Name, "nvme"):
		// device is the controller: nvme0.
		d.Model, d.Serial = r.attr(dir+"/device/model"), r.attr(dir+"/device/serial")
		d.WWN = r.attr(dir + "/wwid")
	default:
		d.Model = r.attr(dir + "/device/model")
		if v := r.attr(dir + "/device/vendor"); v != "" && v != "ATA" && d.Model != "" {
			d.Model = v + " " + d.Model
		}
		d.Serial = r.vpdSerial(dir + "/device/vpd_pg80")
		if w := r.attr(dir + "/device/wwid"); strings.HasPrefix(w, "naa.") {
			d.WWN = "0x" + strings.ToLower(strings.TrimPrefix(w, "naa."))
		}
	}
	if d.Serial == "" {
		d.Serial = r.attr(dir + "/device/serial")
	}
}

// vpdSerial reads the unit serial number of a SCSI VPD page 0x80: a 4-byte header whose last
// byte is the length, then the serial in ASCII.
func (r reader) vpdSerial(p string) string {
	b, err := os.ReadFile(r.path(p))
	if err != nil || len(b) < 4 || b[1] != 0x80 {
		return ""
	}
	n := min(int(b[3]), len(b)-4)
	return strings.TrimSpace(string(bytes.TrimRight(b[4:4+n], "\x00")))
}

// udevLinks are the links udev made in /dev/disk/KIND that point at the disk itself (not at
// one of its partitions), sorted; nil when there is no such directory.
func (r reader) udevLinks(name, kind string) []string {
	dir := "dev/disk/" + kind
	if _, err := os.Stat(r.path(dir)); err != nil {
		return nil
	}
	links := []string{}
	for _, l := range r.entries(dir) {
		target, err := os.Readlink(r.path(dir + "/" + l))
		if err == nil && filepath.Base(target) == name {
			links = append(links, "/"+dir+"/"+l)
		}
	}
	slices.SortStableFunc(links, func(a, b string) int { return byIDRank(a) - byIDRank(b) })
	return links
}

// byIDRank puts the names of the bus and serial first, the WWN names after them.
func byIDRank(p string) int {
	if strings.Contains(p, "/wwn-") || strings.Contains(p, "/nvme-eui.") || strings.Contains(p, "/nvme-nvme.") {
		return 1
	}
	return 0
}

// deriveByID names the disk as udev's 60-persistent-storage rules would, where sysfs says
// enough: virtio-blk and NVMe.
func deriveByID(d api.Disk) []string {
	const dir = "/dev/disk/by-id/"
	var ids []string
	switch {
	case strings.HasPrefix(d.Name, "vd") && d.Serial != "":
		ids = append(ids, dir+"virtio-"+udevSafe(d.Serial))
	case strings.HasPrefix(d.Name, "nvme") && d.Model != "" && d.Serial != "":
		ids = append(ids, dir+"nvme-"+udevSafe(d.Model+"_"+d.Serial))
		if d.WWN != "" {
			ids = append(ids, dir+"nvme-"+udevSafe(d.WWN))
		}
	}
	return ids
}

// deriveByPath is udev's path_id for a virtio-blk disk: the PCI address of its virtio device.
func (r reader) deriveByPath(name, dir string) string {
	if !strings.HasPrefix(name, "vd") {
		return ""
	}
	dev, err := filepath.EvalSymlinks(r.path(dir + "/device"))
	if err != nil {
		return ""
	}
	// .../pci0000:00/0000:00:05.0/virtio2
	if parent := filepath.Base(filepath.Dir(dev)); pciAddr.MatchString(parent) {
		return "/dev/disk/by-path/pci-" + parent
	}
	return ""
}

var pciAddr = regexp.MustCompile(`^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)

// udevSafe is a value as udev writes it into a link name: white space runs become one "_"
// (none at the ends), and every byte outside 0-9 A-Z a-z #+-.:=@_ becomes "_".
func udevSafe(s string) string {
	s = strings.Join(strings.Fields(s), "_")
	b := []byte(s)
	for i, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || strings.IndexByte("#+-.:=@_", c) >= 0) {
			b[i] = '_'
		}
	}
	return string(b)
}

// cpu reads /proc/cpuinfo: the model, and how many sockets, cores and threads.
func (r reader) cpu() api.CPU {
	c := api.CPU{Arch: runtime.GOARCH}
	f, err := os.Open(r.path("proc/cpuinfo"))
	if err != nil {
		return c
	}
	defer f.Close()
	sockets := map[string]bool{}
	cores := map[string]bool{} // physical id + core id
	var phys string
	s := bufio.NewScanner(f)
	for s.Scan() {
		key, val, ok := strings.Cut(s.Text(), ":")
		if !ok {
			continue
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		switch key {
		case "processor":
			c.Threads++
		case "model name":
			if c.Model == "" {
				c.Model = val
			}
		case "physical id":
			phys = val
			sockets[val] = true
		case "core id":
			cores[phys+"/"+val] = true
		}
	}
	c.Sockets, c.Cores = len(sockets), len(cores)
	return c
}

// memory is the installed memory as the kernel's memory blocks count it (what is online),
// else MemTotal (less what the kernel reserved).
func (r reader) memory() uint64 {
	if bs, err := strconv.ParseUint(r.attr("sys/devices/system/memory/block_size_bytes"), 16, 64); err == nil && bs > 0 {
		var n uint64
		for _, e := range r.entries("sys/devices/system/memory") {
			if strings.HasPrefix(e, "memory") && r.attr("sys/devices/system/memory/"+e+"/online") == "1" {
				n++
			}
		}
		if n > 0 {
			return n * bs
		}
	}
	f, err := os.Open(r.path("proc/meminfo"))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err == nil {
				return kb * 1024
			}
		}
	}
	return 0
}
