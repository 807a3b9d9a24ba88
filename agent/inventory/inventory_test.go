package inventory

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/cairn-appliance/cairn/agent/api"
)

// fakeRoot builds a /sys, /proc and /dev tree as a QEMU q35 machine under OVMF shows it, with a
// virtio NIC, a virtio-blk disk, an NVMe disk, a SCSI disk, a USB stick, a CD-ROM and a loop
// device, and the virtual interfaces and devices that are not to be reported.
type fakeRoot struct {
	t    *testing.T
	root string
}

func newFakeRoot(t *testing.T) *fakeRoot {
	f := &fakeRoot{t: t, root: t.TempDir()}
	pci := "sys/devices/pci0000:00/"

	f.file(pci+"0000:00:02.0/virtio0/net/eth0/address", "52:54:00:AB:00:01\n")
	f.file(pci+"0000:00:02.0/virtio0/net/eth0/carrier", "1\n")
	f.file(pci+"0000:00:02.0/virtio0/net/eth0/speed", "-1\n")
	f.link("sys/class/net/eth0", "../../devices/pci0000:00/0000:00:02.0/virtio0/net/eth0")
	f.link(pci+"0000:00:02.0/virtio0/net/eth0/device", "../../../virtio0")
	f.dir("sys/bus/virtio/drivers/virtio_net")
	f.link(pci+"0000:00:02.0/virtio0/driver", "../../../../bus/virtio/drivers/virtio_net")
	f.file(pci+"0000:00:03.0/net/eth1/address", "52:54:00:ab:00:02\n")
	f.file(pci+"0000:00:03.0/net/eth1/carrier", "0\n")
	f.file(pci+"0000:00:03.0/net/eth1/speed", "1000\n")
	f.link("sys/class/net/eth1", "../../devices/pci0000:00/0000:00:03.0/net/eth1")
	f.link(pci+"0000:00:03.0/net/eth1/device", "../../../0000:00:03.0")
	f.dir("sys/bus/pci/drivers/e1000e")
	f.link(pci+"0000:00:03.0/driver", "../../../bus/pci/drivers/e1000e")
	for _, virt := range []string{"lo", "br0"} { // no device: not reported
		f.file("sys/devices/virtual/net/"+virt+"/address", "00:00:00:00:00:00\n")
		f.link("sys/class/net/"+virt, "../../devices/virtual/net/"+virt)
	}

	// virtio-blk, 1 GiB, with a serial (QEMU's serial= property).
	f.block("vda", pci+"0000:00:05.0/virtio2/block/vda", "2097152", map[string]string{
		"serial": "disk A 1", "removable": "0", "queue/rotational": "1"})
	f.link(pci+"0000:00:05.0/virtio2/block/vda/device", "../../../virtio2")
	// NVMe, 10 GiB: the namespace's device link is the controller.
	f.block("nvme0n1", pci+"0000:00:06.0/nvme/nvme0/nvme0n1", "20971520", map[string]string{
		"wwid": "eui.0011223344556677", "removable": "0", "queue/rotational": "0"})
	f.file(pci+"0000:00:06.0/nvme/nvme0/model", "QEMU NVMe Ctrl                          \n")
	f.file(pci+"0000:00:06.0/nvme/nvme0/serial", "nvme-1  \n")
	f.link(pci+"0000:00:06.0/nvme/nvme0/nvme0n1/device", "../../nvme0")
	// SCSI (virtio-scsi), 4 GiB: the serial is in VPD page 0x80.
	scsi := pci + "0000:00:07.0/virtio3/host0/target0:0:0/0:0:0:0/"
	f.block("sda", scsi+"block/sda", "8388608", map[string]string{"removable": "0", "queue/rotational": "1"})
	f.file(scsi+"vendor", "QEMU    \n")
	f.file(scsi+"model", "QEMU HARDDISK   \n")
	f.file(scsi+"type", "0\n")
	f.file(scsi+"wwid", "naa.5000C500ABCDEF01\n")
	f.file(scsi+"vpd_pg80", "\x00\x80\x00\x06scsi-9")
	f.link(scsi+"block/sda/device", "../../../0:0:0:0")
	// A USB stick: removable.
	usb := pci + "0000:00:1d.0/usb1/1-1/1-1:1.0/host1/target1:0:0/1:0:0:0/"
	f.block("sdb", usb+"block/sdb", "31457280", map[string]string{"removable": "1", "queue/rotational": "0"})
	f.file(usb+"vendor", "Kingston\n")
	f.file(usb+"model", "DataTraveler 3.0\n")
	f.file(usb+"type", "0\n")
	f.link(usb+"block/sdb/device", "../../../1:0:0:0")
	// A CD-ROM and a loop device: not reported.
	cd := pci + "0000:00:1f.2/ata1/host2/target2:0:0/2:0:0:0/"
	f.block("sr0", cd+"block/sr0", "1000", map[string]string{"removable": "1"})
	f.file(cd+"type", "5\n")
	f.link(cd+"block/sr0/device", "../../../2:0:0:0")
	f.block("loop0", "sys/devices/virtual/block/loop0", "2048", nil)

	f.dir("sys/firmware/efi/efivars")
	f.file("sys/class/dmi/id/sys_vendor", "QEMU\n")
	f.file("sys/class/dmi/id/product_name", "Standard PC (Q35 + ICH9, 2009)\n")
	f.file("sys/class/dmi/id/product_uuid", "8f0c4a9e-0000-4000-8000-000000000001\n")
	f.file("sys/devices/system/memory/block_size_bytes", "8000000\n") // 128 MiB, in hex
	for i, online := range []string{"1", "1", "1", "1", "0"} {
		f.file("sys/devices/system/memory/memory"+string(rune('0'+i))+"/online", online+"\n")
	}
	f.file("proc/cpuinfo", "processor\t: 0\nmodel name\t: QEMU Virtual CPU version 2.5+\nphysical id\t: 0\ncore id\t\t: 0\n\n"+
		"processor\t: 1\nmodel name\t: QEMU Virtual CPU version 2.5+\nphysical id\t: 0\ncore id\t\t: 1\n\n")
	f.file("proc/meminfo", "MemTotal:         498000 kB\nMemFree:          400000 kB\n")
	return f
}

func (f *fakeRoot) dir(p string) {
	f.t.Helper()
	if err := os.MkdirAll(filepath.Join(f.root, p), 0o755); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeRoot) file(p, content string) {
	f.t.Helper()
	f.dir(filepath.Dir(p))
	if err := os.WriteFile(filepath.Join(f.root, p), []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeRoot) link(p, target string) {
	f.t.Helper()
	f.dir(filepath.Dir(p))
	if err := os.Symlink(target, filepath.Join(f.root, p)); err != nil {
		f.t.Fatal(err)
	}
}

// block makes a block device's directory under devices and its /sys/block link.
func (f *fakeRoot) block(name, dir, sectors string, attrs map[string]string) {
	f.t.Helper()
	f.file(dir+"/size", sectors+"\n")
	for k, v := range attrs {
		f.file(dir+"/"+k, v+"\n")
	}
	f.link("sys/block/"+name, "../"+strings.TrimPrefix(dir, "sys/"))
}

func TestCollectWithoutUdev(t *testing.T) {
	f := newFakeRoot(t)
	addrs := func(name string) []string {
		if name == "eth0" {
			return []string{"10.20.0.200/24"}
		}
		return nil
	}
	inv, err := Collect(Config{Root: f.root, MAC: "52:54:00:ab:00:01", Addrs: addrs, AgentVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	want := api.Inventory{
		MAC:      "52:54:00:ab:00:01",
		Firmware: api.UEFI,
		NICs: []api.NIC{
			{Name: "eth0", MAC: "52:54:00:ab:00:01", Driver: "virtio_net", Carrier: true, Addresses: []string{"10.20.0.200/24"}},
			{Name: "eth1", MAC: "52:54:00:ab:00:02", Driver: "e1000e", SpeedMbps: 1000},
		},
		Disks: []api.Disk{
			{Name: "nvme0n1", Path: "/dev/nvme0n1", SizeBytes: 10 << 30, Model: "QEMU NVMe Ctrl", Serial: "nvme-1", WWN: "eui.0011223344556677",
				ByID: []string{"/dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_nvme-1", "/dev/disk/by-id/nvme-eui.0011223344556677"}},
			{Name: "sda", Path: "/dev/sda", SizeBytes: 4 << 30, Rotational: true, Model: "QEMU QEMU HARDDISK", Serial: "scsi-9", WWN: "0x5000c500abcdef01"},
			{Name: "sdb", Path: "/dev/sdb", SizeBytes: 15 << 30, Removable: true, Model: "Kingston DataTraveler 3.0"},
			{Name: "vda", Path: "/dev/vda", SizeBytes: 1 << 30, Rotational: true, Serial: "disk A 1",
				ByID: []string{"/dev/disk/by-id/virtio-disk_A_1"}, ByPath: "/dev/disk/by-path/pci-0000:00:05.0"},
		},
		CPU:          api.CPU{Model: "QEMU Virtual CPU version 2.5+", Arch: runtime.GOARCH, Sockets: 1, Cores: 2, Threads: 2},
		MemoryBytes:  512 << 20,
		System:       api.System{Vendor: "QEMU", Product: "Standard PC (Q35 + ICH9, 2009)", UUID: "8f0c4a9e-0000-4000-8000-000000000001"},
		AgentVersion: "test",
	}
	if g, w := jsonOf(t, inv), jsonOf(t, want); g != w {
		t.Errorf("Collect() =\n%s\nwant\n%s", g, w)
	}
}

// With udev's /dev/disk/by-id, its links are reported (partitions' left out), not derived.
func TestCollectWithUdevLinks(t *testing.T) {
	f := newFakeRoot(t)
	for link, target := range map[string]string{
		"dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_scsi-9":       "../../sda",
		"dev/disk/by-id/wwn-0x5000c500abcdef01":                "../../sda",
		"dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_scsi-9-part1": "../../sda1",
		"dev/disk/by-id/virtio-disk_A_1":                       "../../vda",
		"dev/disk/by-path/pci-0000:00:07.0-scsi-0:0:0:0":       "../../sda",
		"dev/disk/by-path/pci-0000:00:05.0":                    "../../vda",
	} {
		f.link(link, target)
	}
	inv, err := Collect(Config{Root: f.root, Addrs: func(string) []string { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]api.Disk{}
	for _, d := range inv.Disks {
		got[d.Name] = d
	}
	for _, tc := range []struct {
		name   string
		byID   []string
		byPath string
	}{
		{"sda", []string{"/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_scsi-9", "/dev/disk/by-id/wwn-0x5000c500abcdef01"}, "/dev/disk/by-path/pci-0000:00:07.0-scsi-0:0:0:0"},
		{"vda", []string{"/dev/disk/by-id/virtio-disk_A_1"}, "/dev/disk/by-path/pci-0000:00:05.0"},
		{"nvme0n1", []string{}, ""}, // udev ran and made none: none are invented
	} {
		d := got[tc.name]
		if strings.Join(d.ByID, " ") != strings.Join(tc.byID, " ") || d.ByPath != tc.byPath {
			t.Errorf("%s: by-id %q, by-path %q; want %q, %q", tc.name, d.ByID, d.ByPath, tc.byID, tc.byPath)
		}
	}
}

func TestCollectBIOSAndMemTotal(t *testing.T) {
	f := newFakeRoot(t)
	for _, p := range []string{"sys/firmware/efi", "sys/devices/system/memory"} {
		if err := os.RemoveAll(filepath.Join(f.root, p)); err != nil {
			t.Fatal(err)
		}
	}
	inv, err := Collect(Config{Root: f.root, Addrs: func(string) []string { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if inv.Firmware != api.BIOS || inv.MemoryBytes != 498000*1024 {
		t.Errorf("firmware %s, memory %d; want bios and MemTotal's %d", inv.Firmware, inv.MemoryBytes, 498000*1024)
	}
}

func TestCollectNoSysfs(t *testing.T) {
	if _, err := Collect(Config{Root: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "no sysfs") {
		t.Errorf("Collect() of an empty root = %v, want an error saying there is no sysfs", err)
	}
}

func TestUdevSafe(t *testing.T) {
	for in, want := range map[string]string{
		"QEMU NVMe Ctrl_nvme-1":   "QEMU_NVMe_Ctrl_nvme-1",
		"  two  spaces ":          "two_spaces",
		"a/b\\c\"d$e":             "a_b_c_d_e",
		"keep#+-.:=@_":            "keep#+-.:=@_",
		"WD-WCC4E1234567\x00\x01": "WD-WCC4E1234567__",
	} {
		if got := udevSafe(in); got != want {
			t.Errorf("udevSafe(%q) = %q, want %q", in, got, want)
		}
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
