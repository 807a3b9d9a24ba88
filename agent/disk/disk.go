// Package disk prepares the disk the netboot agent writes an OS image to, before and after
// the image: Select picks the disk a plan names among the inventory's disks, Wipe clears the
// signatures of a previous install, Finish lays out the rest of the disk once the image is
// written at offset 0, and ConfigDrivePart finds the configdrive partition again.
//
// Finish reads and writes GPT (and MBR) partition tables itself, with no outside tools: it
// moves the image's backup GPT to the real end of the disk, adds the site's extra partitions
// after the image's last one or, when there are none, grows the image's last partition where
// the image allows, and puts a configdrive partition (GPT name cidata) at the end of the
// disk. It changes no file system: the configdrive's is written by package agent/configdrive
// and a grown root file system is grown by cloud-init on first boot. New partitions start on
// 1 MiB boundaries and their GUIDs derive from the disk's GUID and their index, so the same
// image on the same disk gets the same table.
//
// Devices are block devices (Linux: sizes and sector sizes by ioctl, zeroing by BLKZEROOUT,
// the kernel told to re-read the table by BLKRRPART) or plain files, as tests use. Logical
// sectors of 512 and 4096 bytes are supported; a file's sector size is that of the GPT it
// holds (512 when it holds none).
package disk

import (
	"fmt"
)

const (
	mib            = 1 << 20
	align          = mib // where new partitions start
	ConfigDriveMiB = 16  // the configdrive partition's default size, in MiB
)

// Part is one partition: its number (1-based, as /dev/sda1 counts), its GPT name, where it
// starts and how long it is, in bytes from the start of the disk.
type Part struct {
	Index int    `json:"index"`
	Name  string `json:"name,omitempty"`
	Start int64  `json:"start"`
	Size  int64  `json:"size"`
}

func (p Part) String() string {
	return fmt.Sprintf("partition %d %q at %d (%s)", p.Index, p.Name, p.Start, size(p.Size))
}

// Layout is what Finish did.
type Layout struct {
	Table string `json:"table"` // gpt or mbr
	// Grown is the image's last partition grown up to the configdrive; nil when not grown.
	Grown       *Part  `json:"grown,omitempty"`
	Extra       []Part `json:"extra,omitempty"`
	ConfigDrive Part   `json:"configdrive"`
	DiskSize    int64  `json:"disk_size"`
	// SectorSize is the disk's logical sector size, 512 or 4096: the configdrive's FAT
	// takes the same (configdrive.WriteSectors).
	SectorSize int64 `json:"sector_size"`
	// Note says what did not stop Finish but is worth a line in the log: the kernel could
	// not re-read the new table (the device is busy, or a loop device without partition
	// scanning), so partition devices show the old table until the next boot. The table on
	// the disk is right, and ConfigDrivePart reads it from the disk.
	Note string `json:"note,omitempty"`
}

// size says n bytes for people: "16 MiB (16777216 bytes)".
func size(n int64) string {
	units := []string{"bytes", "KiB", "MiB", "GiB", "TiB", "PiB"}
	f, u := float64(n), 0
	for f >= 1024 && u < len(units)-1 {
		f /= 1024
		u++
	}
	if u == 0 {
		return fmt.Sprintf("%d bytes", n)
	}
	if f == float64(int64(f)) {
		return fmt.Sprintf("%d %s (%d bytes)", int64(f), units[u], n)
	}
	return fmt.Sprintf("%.1f %s (%d bytes)", f, units[u], n)
}

func alignUp(n, a int64) int64   { return (n + a - 1) / a * a }
func alignDown(n, a int64) int64 { return n / a * a }
