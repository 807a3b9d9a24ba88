package disk

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-appliance/cairn/agent/api"
)

const gib = 1 << 30

var disks = []api.Disk{
	{Name: "sda", Path: "/dev/sda", SizeBytes: 8 * gib, Removable: true, Model: "Cruzer Blade", Serial: "4C530001"},
	{Name: "sdb", Path: "/dev/sdb", SizeBytes: 500 * gib, Rotational: true, Model: "ST500DM002", Serial: "Z3T0ABCD", WWN: "0x5000c500a1b2c3d4"},
	{Name: "sdc", Path: "/dev/sdc", SizeBytes: 0, Removable: true, Model: "Card Reader"},
	{Name: "vda", Path: "/dev/vda", SizeBytes: 20 * gib, Serial: "cairn-os",
		ByID: []string{"/dev/disk/by-id/virtio-cairn-os"}, ByPath: "/dev/disk/by-path/pci-0000:00:04.0"},
	{Name: "nvme0n1", Path: "/dev/nvme0n1", SizeBytes: 100 * gib, Model: "Samsung SSD 980 1TB", Serial: "S64ANS0R", WWN: "eui.002538b411b2c3d4"},
	{Name: "nvme1n1", Path: "/dev/nvme1n1", SizeBytes: 100 * gib, Model: "Samsung SSD 980 1TB", Serial: "S64ANS0Q"},
}

// fakeDev makes a /dev tree with udev's links, some of which the inventory does not list.
func fakeDev(t *testing.T) string {
	root := t.TempDir()
	for _, d := range disks {
		if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, d.Path), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(root, "dev/vda1"), nil, 0o644)
	for link, target := range map[string]string{
		"dev/disk/by-id/wwn-0x5000c500a1b2c3d4":        "../../sdb",
		"dev/disk/by-id/nvme-Samsung_SSD_980_S64ANS0Q": "../../nvme1n1",
		"dev/disk/by-id/virtio-cairn-os-part1":         "../../vda1",
		"dev/disk/by-label/root":                       "/dev/disk/by-id/nvme-Samsung_SSD_980_S64ANS0Q", // absolute: within root
		"dev/disk/by-id/loop-a":                        "loop-b",
		"dev/disk/by-id/loop-b":                        "loop-a",
		"dev/root":                                     "nvme0n1",
	} {
		p := filepath.Join(root, link)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestSelect(t *testing.T) {
	root := fakeDev(t)
	for _, tc := range []struct {
		spec string
		need uint64
		want string // the disk's name, or the error's words
	}{
		{"/dev/vda", 0, "vda"},
		{"/dev/disk/by-id/virtio-cairn-os", 0, "vda"},
		{"/dev/disk/by-path/pci-0000:00:04.0", 0, "vda"},
		{"/dev/disk/by-id/wwn-0x5000c500a1b2c3d4", 0, "sdb"},            // through the link
		{"/dev/disk/by-id/nvme-Samsung_SSD_980_S64ANS0Q", 0, "nvme1n1"}, // likewise
		{"/dev/disk/by-label/root", 0, "nvme1n1"},                       // an absolute link, then a relative one
		{"/dev/root", 0, "nvme0n1"},
		{"/dev/sda", 0, "sda"}, // removable, but named
		{" first-nonremovable ", 0, "sdb"},
		{"largest", 0, "sdb"},
		{"smallest", 0, "vda"}, // not the USB stick, not the empty card reader
		{"serial:S64ANS0Q", 0, "nvme1n1"},
		{"serial:4C530001", 0, "sda"},
		{"wwn:5000C500A1B2C3D4", 0, "sdb"},
		{"wwn:0x5000c500a1b2c3d4", 0, "sdb"},
		{"wwn:eui.002538b411b2c3d4", 0, "nvme0n1"},
		{"model:Samsung SSD 980 1TB", 0, "nvme0n1"}, // the first in kernel order
		{"model:ST500DM002", 400 * gib, "sdb"},

		{"smallest", 30 * gib, `disk vda (/dev/vda, "smallest") is 20 GiB (21474836480 bytes), smaller than the 30 GiB (32212254720 bytes)`},
		{"/dev/disk/by-id/virtio-cairn-os-part1", 0, "leads to /dev/vda1, which is no whole disk"},
		{"/dev/disk/by-id/missing", 0, "/dev/disk/by-id/missing does not exist"},
		{"/dev/disk/by-id/loop-a", 0, "too many levels of symbolic links"},
		{"serial:NOPE", 0, `no disk matches "serial:NOPE"; the disks seen are sda 8 GiB (8589934592 bytes) model "Cruzer Blade" serial "4C530001" removable; sdb 500 GiB`},
		{"model:Samsung", 0, "no disk matches"}, // exact
		{"serial:", 0, "names no serial"},
		{"biggest", 0, `"biggest" is neither a device path`},
		{"", 0, "the plan names none"},
	} {
		got, err := SelectIn(root, tc.spec, disks, tc.need)
		if err != nil {
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Select(%q) = %v, want %s", tc.spec, err, tc.want)
			}
			continue
		}
		if got.Name != tc.want {
			t.Errorf("Select(%q) = %s, want %s", tc.spec, got.Name, tc.want)
		}
	}
	if _, err := Select("largest", nil, 0); err == nil || !strings.Contains(err.Error(), "the disks seen are none") {
		t.Errorf("Select without disks = %v, want an error saying there are none", err)
	}
	if _, err := Select("first-nonremovable", disks[:1], 0); err == nil || !strings.Contains(err.Error(), "removable") {
		t.Errorf("Select(first-nonremovable) of a USB stick alone = %v, want none", err)
	}
}
