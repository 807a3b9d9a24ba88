package disk

import (
	"encoding/binary"
)

const (
	mbrTypeProtective = 0xEE // the whole-disk entry of a GPT disk
	mbrTypeFAT16LBA   = 0x0E // the configdrive on an MBR disk
	mbrTypeExtended   = 0x05
	mbrTypeExtendedL  = 0x0F
	mbrTypeLinux      = 0x83
)

// mbrEntry is one of the four primary entries of an MBR.
type mbrEntry struct {
	typ          byte
	start, count uint32 // LBAs
}

func (e mbrEntry) used() bool { return e.typ != 0 && e.count != 0 }

// mbr is sector 0 of a disk.
type mbr []byte

// valid says whether m is a partition table: the 55 AA signature, entries whose status is
// 0x00 or 0x80 (a file system's boot sector has code there), at least one of them used.
func (m mbr) valid() bool {
	if len(m) < 512 || m[510] != 0x55 || m[511] != 0xAA {
		return false
	}
	used := false
	for i := range 4 {
		if s := m[446+16*i]; s != 0 && s != 0x80 {
			return false
		}
		used = used || m.entry(i).used()
	}
	return used
}

func (m mbr) entry(i int) mbrEntry {
	b := m[446+16*i:]
	return mbrEntry{typ: b[4], start: binary.LittleEndian.Uint32(b[8:]), count: binary.LittleEndian.Uint32(b[12:])}
}

// setEntry writes entry i, its CHS fields marked as "use the LBA fields" (as for every
// partition past 8 GiB).
func (m mbr) setEntry(i int, e mbrEntry) {
	b := m[446+16*i : 446+16*(i+1)]
	clear(b)
	copy(b[1:4], []byte{0xFE, 0xFF, 0xFF})
	b[4] = e.typ
	copy(b[5:8], []byte{0xFE, 0xFF, 0xFF})
	binary.LittleEndian.PutUint32(b[8:], e.start)
	binary.LittleEndian.PutUint32(b[12:], e.count)
}

// protective says whether the MBR marks a GPT disk: an entry of type 0xEE.
func (m mbr) protective() bool {
	for i := range 4 {
		if m.entry(i).typ == mbrTypeProtective {
			return true
		}
	}
	return false
}

// coverDisk stretches a protective MBR's one entry over a disk of so many logical sectors,
// as far as 32 bits reach. A hybrid MBR (more entries than the protective one) is left as
// the image made it.
func (m mbr) coverDisk(sectors uint64) bool {
	n, at := 0, -1
	for i := range 4 {
		if e := m.entry(i); e.used() {
			n++
			if e.typ == mbrTypeProtective && e.start == 1 {
				at = i
			}
		}
	}
	if n != 1 || at < 0 {
		return false
	}
	b := m[446+16*at:]
	binary.LittleEndian.PutUint32(b[12:], uint32(min(sectors-1, 0xFFFFFFFF)))
	copy(b[5:8], []byte{0xFF, 0xFF, 0xFF})
	return true
}
