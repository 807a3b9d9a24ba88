package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cairn-appliance/cairn/agent/api"
)

// ConfigDriveName is the configdrive partition's GPT name, and the FAT label cloud-init
// looks for.
const ConfigDriveName = "cidata"

// FinishOptions says what Finish adds to the disk.
type FinishOptions struct {
	// Extra are the site's partitions, made after the image's last partition in this order.
	// Label is the GPT partition name; SizeBytes 0, allowed for the last one only, takes the
	// rest of the disk before the configdrive. Filesystem "swap" gets the Linux swap type,
	// anything else Linux filesystem (no file system is made).
	Extra []api.Partition
	// ConfigDriveSize is the configdrive partition's size in bytes, a multiple of the sector
	// size; 0 means 16 MiB.
	ConfigDriveSize int64
}

// Finish lays out the rest of dev once an OS image is written at its offset 0:
//
//   - it reads the image's partition table: GPT (its primary header and entries, CRCs
//     checked; a damaged table is refused), or an MBR with no protective entry;
//   - GPT: it puts the backup header and entries at the real end of the disk and sets the
//     last usable LBA to match, and stretches a protective MBR over the disk;
//   - it adds opts.Extra after the image's last partition, each starting on a 1 MiB
//     boundary; an MBR has no partition names, so an MBR image takes no extra partitions;
//   - when there are none, it grows the image's last partition up to the configdrive when
//     its type is Linux filesystem or Linux root (x86-64 or arm64), on GPT only; the file
//     system inside is left to grow on first boot (cloud-init's growpart and resizefs);
//   - it adds the configdrive partition at the end of the disk, 1 MiB aligned: GPT name
//     cidata, type Microsoft basic data; on MBR a primary partition of type 0x0E (FAT16
//     LBA) in a free slot, within the first 2 TiB (of 512-byte sectors) MBR can address;
//   - it zeroes the first and the last MiB of each partition it adds, so that no file system
//     of a previous install is found in them, and the image's old backup GPT header;
//   - it writes the tables (the backup first), syncs, and on a block device asks the
//     kernel to re-read the table; when the kernel cannot, Layout.Note says why.
//
// The new partitions' GUIDs derive from the disk's GUID and their index. Finish refuses a
// disk that already has a configdrive partition: it runs once, on a freshly written image.
func Finish(dev string, opts FinishOptions) (Layout, error) {
	cds := opts.ConfigDriveSize
	if cds == 0 {
		cds = ConfigDriveMiB * mib
	}
	if cds < 0 {
		return Layout{}, fmt.Errorf("finishing %s: configdrive size %d bytes is negative", dev, cds)
	}
	for i, p := range opts.Extra {
		if err := checkName(p.Label); err != nil {
			return Layout{}, fmt.Errorf("finishing %s: extra partition %d: %w", dev, i+1, err)
		}
		if p.SizeBytes == 0 && i != len(opts.Extra)-1 {
			return Layout{}, fmt.Errorf("finishing %s: extra partition %d (%q) has no size, but only the last partition may take the rest of the disk: give it a size", dev, i+1, p.Label)
		}
		if p.SizeBytes > 1<<62 {
			return Layout{}, fmt.Errorf("finishing %s: extra partition %d (%q) of %d bytes is larger than any disk", dev, i+1, p.Label, p.SizeBytes)
		}
	}
	d, err := open(dev, true)
	if err != nil {
		return Layout{}, fmt.Errorf("finishing: %w", err)
	}
	defer d.Close()
	ss := d.sectorSize()
	if cds%ss != 0 || cds == 0 {
		return Layout{}, fmt.Errorf("finishing %s: configdrive size %d bytes is not a whole number of its %d-byte sectors", dev, cds, ss)
	}
	if d.size < 2*mib {
		return Layout{}, fmt.Errorf("finishing %s: the disk is %s, too small to hold anything", dev, size(d.size))
	}
	m, err := d.readAt(512, 0)
	if err != nil {
		return Layout{}, fmt.Errorf("finishing: %w", err)
	}
	parts, table, err := partitions(d, ss, mbr(m))
	if err != nil {
		return Layout{}, fmt.Errorf("finishing: %w", err)
	}
	if p, ok := findConfigDrive(d, parts); ok {
		return Layout{}, fmt.Errorf("finishing %s: the disk already has a configdrive (%s): Finish runs once, right after the image is written; write the image again", dev, p)
	}
	var lay Layout
	switch table {
	case "gpt":
		lay, err = finishGPT(d, ss, mbr(m), opts.Extra, cds)
	case "mbr":
		lay, err = finishMBR(d, ss, mbr(m), opts.Extra, cds)
	default:
		return Layout{}, fmt.Errorf("finishing %s: no partition table at the start of the disk (neither GPT nor MBR): was the image written? An image must hold a partition table, not a bare file system", dev)
	}
	if err != nil {
		return Layout{}, fmt.Errorf("finishing %s: %w", dev, err)
	}
	if err := d.sync(); err != nil {
		return Layout{}, fmt.Errorf("finishing: %w", err)
	}
	if d.block {
		if err := reread(d.f); err != nil {
			lay.Note = err.Error()
		}
	}
	return lay, nil
}

// tooSmall is the error for a disk without room for the image, the extras and the
// configdrive; need is in bytes.
func tooSmall(d *device, imgEnd, need int64, extra []api.Partition, cds int64) error {
	var sb strings.Builder
	fmt.Fprintf(&sb, "the disk is %s, too small for the image's partitions (up to byte %d)", size(d.size), imgEnd)
	if len(extra) > 0 {
		var fixed int64
		for _, p := range extra {
			fixed += int64(p.SizeBytes)
		}
		fmt.Fprintf(&sb, ", %d extra partitions (%s, and 1 MiB at least for one without a size)", len(extra), size(fixed))
	}
	fmt.Fprintf(&sb, " and a configdrive of %s: it needs at least %s; choose a larger disk or make the partitions smaller", size(cds), size(alignUp(need, mib)))
	return errors.New(sb.String())
}

func finishGPT(d *device, ss int64, m mbr, extra []api.Partition, cds int64) (Layout, error) {
	g, err := readGPT(d, ss)
	if err != nil {
		return Layout{}, err
	}
	total := d.size / ss
	last := total - 1
	if int64(g.backupLBA) > last {
		return Layout{}, fmt.Errorf("the image's GPT says its disk ends at LBA %d (%s), but this disk is %s: the image is larger than the disk; choose a larger disk", g.backupLBA, size((int64(g.backupLBA)+1)*ss), size(d.size))
	}
	imgEnd, lastIdx := int64(g.firstUsable)-1, -1
	var free []int
	for i := range int(g.numEntries) {
		e := g.entry(i)
		if !e.used() {
			free = append(free, i)
			continue
		}
		if int64(e.last) > imgEnd || lastIdx < 0 {
			imgEnd, lastIdx = int64(e.last), i
		}
	}
	if len(free) < len(extra)+1 {
		return Layout{}, fmt.Errorf("the image's GPT has %d free entries of %d, and %d partitions are to be added: use fewer extra partitions", len(free), g.numEntries, len(extra)+1)
	}

	a := align / ss
	es := int64(g.entrySectors())
	cdSec := cds / ss
	// The room needed: extras in turn (1 MiB for one taking the rest), then the configdrive,
	// then the backup entries and header.
	pos := alignUp(imgEnd+1, a)
	for _, p := range extra {
		n := a
		if p.SizeBytes > 0 {
			n = (int64(p.SizeBytes) + ss - 1) / ss
		}
		pos = alignUp(pos+n, a)
	}
	if need := pos + cdSec + es + 1; need > total {
		return Layout{}, tooSmall(d, (imgEnd+1)*ss, need*ss, extra, cds)
	}
	lastUsable := last - es - 1
	cdStart := alignDown(lastUsable+1-cdSec, a)

	lay := Layout{Table: "gpt", DiskSize: d.size, SectorSize: ss}
	var zero []Part
	pos = alignUp(imgEnd+1, a)
	for i, p := range extra {
		end := pos + (int64(p.SizeBytes)+ss-1)/ss - 1
		if p.SizeBytes == 0 {
			end = cdStart - 1
		}
		typ := typeLinuxFS
		if p.Filesystem == "swap" {
			typ = typeLinuxSwap
		}
		idx := free[i]
		g.setEntry(idx, gptEntry{typ: typ, id: partitionGUID(g.diskGUID, idx+1), first: uint64(pos), last: uint64(end), name: p.Label})
		part := Part{Index: idx + 1, Name: p.Label, Start: pos * ss, Size: (end - pos + 1) * ss}
		lay.Extra = append(lay.Extra, part)
		zero = append(zero, part)
		pos = alignUp(end+1, a)
	}
	if len(extra) == 0 && lastIdx >= 0 {
		e := g.entry(lastIdx)
		if slices.Contains(growableGPTTypes, e.typ) && int64(e.last) < cdStart-1 {
			// In place, so that the entry's attributes and any bytes past 128 stay.
			binary.LittleEndian.PutUint64(g.entries[lastIdx*int(g.entrySize)+40:], uint64(cdStart-1))
			lay.Grown = &Part{Index: lastIdx + 1, Name: e.name, Start: int64(e.first) * ss, Size: (cdStart - int64(e.first)) * ss}
		}
	}
	idx := free[len(extra)]
	g.setEntry(idx, gptEntry{typ: typeBasicData, id: partitionGUID(g.diskGUID, idx+1), first: uint64(cdStart), last: uint64(cdStart + cdSec - 1), name: ConfigDriveName})
	lay.ConfigDrive = Part{Index: idx + 1, Name: ConfigDriveName, Start: cdStart * ss, Size: cds}
	zero = append(zero, lay.ConfigDrive)

	for _, p := range zero {
		if err := zeroEnds(d, p); err != nil {
			return Layout{}, err
		}
	}
	// The image's backup header, now in the middle of the disk, must not be taken for one.
	if old := int64(g.backupLBA); old != last {
		from := max(old-es, imgEnd+1)
		if err := d.zero(from*ss, (old-from+1)*ss); err != nil {
			return Layout{}, err
		}
	}
	g.lastUsable = uint64(lastUsable)
	if err := g.write(d); err != nil {
		return Layout{}, err
	}
	if m.coverDisk(uint64(total)) {
		if err := d.writeAt(m, 0); err != nil {
			return Layout{}, err
		}
	}
	return lay, nil
}

func finishMBR(d *device, ss int64, m mbr, extra []api.Partition, cds int64) (Layout, error) {
	if len(extra) > 0 {
		return Layout{}, fmt.Errorf("the image has an MBR partition table, which has no partition names: the %d extra partitions need a GPT image; use one, or no extra partitions", len(extra))
	}
	a := align / ss
	cdSec := cds / ss
	// MBR's 32-bit LBAs reach so far: past that, the disk is not used.
	limit := min(d.size/ss, 1<<32)
	imgEnd, slot := int64(0), -1
	for i := range 4 {
		e := m.entry(i)
		if !e.used() {
			if slot < 0 {
				slot = i
			}
			continue
		}
		imgEnd = max(imgEnd, int64(e.start)+int64(e.count)-1)
	}
	if slot < 0 {
		return Layout{}, errors.New("the image's MBR has all four primary partitions in use, so there is no slot for the configdrive: use a GPT image or one with fewer primary partitions")
	}
	if need := alignUp(imgEnd+1, a) + cdSec; need > limit {
		if limit < d.size/ss {
			return Layout{}, fmt.Errorf("the image's MBR partitions end at byte %d, and a configdrive of %s must fit below the %s an MBR can address: use a GPT image", (imgEnd+1)*ss, size(cds), size(limit*ss))
		}
		return Layout{}, tooSmall(d, (imgEnd+1)*ss, need*ss, nil, cds)
	}
	cdStart := alignDown(limit-cdSec, a)
	m.setEntry(slot, mbrEntry{typ: mbrTypeFAT16LBA, start: uint32(cdStart), count: uint32(cdSec)})
	lay := Layout{Table: "mbr", DiskSize: d.size, SectorSize: ss, ConfigDrive: Part{Index: slot + 1, Start: cdStart * ss, Size: cds}}
	if err := zeroEnds(d, lay.ConfigDrive); err != nil {
		return Layout{}, err
	}
	if err := d.writeAt(m, 0); err != nil {
		return Layout{}, err
	}
	return lay, nil
}

// zeroEnds zeroes the first and the last MiB of p, where file systems and RAID members keep
// their signatures.
func zeroEnds(d *device, p Part) error {
	if err := d.zero(p.Start, min(p.Size, mib)); err != nil {
		return err
	}
	if p.Size > mib {
		return d.zero(p.Start+max(p.Size-mib, mib), min(p.Size-mib, mib))
	}
	return nil
}

// partitions lists the partitions of d's table: "gpt", "mbr", or "" when d has none.
func partitions(d *device, ss int64, m mbr) ([]Part, string, error) {
	switch {
	case m.protective():
		g, err := readGPT(d, ss)
		if err != nil {
			return nil, "", err
		}
		var parts []Part
		for i := range int(g.numEntries) {
			if e := g.entry(i); e.used() {
				parts = append(parts, Part{Index: i + 1, Name: e.name, Start: int64(e.first) * ss, Size: int64(e.last-e.first+1) * ss})
			}
		}
		return parts, "gpt", nil
	case m.valid():
		var parts []Part
		for i := range 4 {
			if e := m.entry(i); e.used() && e.typ != mbrTypeExtended && e.typ != mbrTypeExtendedL {
				parts = append(parts, Part{Index: i + 1, Start: int64(e.start) * ss, Size: int64(e.count) * ss})
			}
		}
		return parts, "mbr", nil
	}
	return nil, "", nil
}

// findConfigDrive is the first partition named cidata, else the first whose FAT label is.
func findConfigDrive(d *device, parts []Part) (Part, bool) {
	for _, p := range parts {
		if strings.EqualFold(p.Name, ConfigDriveName) {
			return p, true
		}
	}
	for _, p := range parts {
		if p.Start+512 > d.size {
			continue
		}
		if b, err := d.readAt(512, p.Start); err == nil && strings.EqualFold(fatLabel(b), ConfigDriveName) {
			return p, true
		}
	}
	return Part{}, false
}

// fatLabel is the volume label in a FAT boot sector, "" when b is none or has no label.
func fatLabel(b []byte) string {
	if len(b) < 512 || b[510] != 0x55 || b[511] != 0xAA || (b[0] != 0xEB && b[0] != 0xE9) {
		return ""
	}
	var l string
	switch {
	case b[38] == 0x29 && string(b[54:57]) == "FAT":
		l = string(b[43:54])
	case b[66] == 0x29 && string(b[82:87]) == "FAT32":
		l = string(b[71:82])
	}
	if l = strings.TrimRight(l, " "); l == "NO NAME" {
		return ""
	}
	return l
}

// ConfigDrivePart finds the configdrive partition on dev: the first partition with GPT name
// cidata, else the first whose FAT label is cidata (as cloud-init finds it; upper or lower
// case). ok is false when there is none, or no partition table at all.
func ConfigDrivePart(dev string) (p Part, ok bool, err error) {
	d, err := open(dev, false)
	if err != nil {
		return Part{}, false, fmt.Errorf("looking for the configdrive: %w", err)
	}
	defer d.Close()
	if d.size < 512 {
		return Part{}, false, nil
	}
	m, err := d.readAt(512, 0)
	if err != nil {
		return Part{}, false, fmt.Errorf("looking for the configdrive: %w", err)
	}
	parts, _, err := partitions(d, d.sectorSize(), mbr(m))
	if err != nil {
		return Part{}, false, fmt.Errorf("looking for the configdrive: %w", err)
	}
	p, ok = findConfigDrive(d, parts)
	return p, ok, nil
}
