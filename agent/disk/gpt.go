package disk

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"strings"
	"unicode/utf16"
)

const (
	gptSignature  = "EFI PART"
	gptRevision   = 0x00010000
	gptHeaderSize = 92
	gptNameUnits  = 36 // UTF-16 units in a partition name
)

// guid is a GUID as GPT stores it: the first three fields little-endian.
type guid [16]byte

// parseGUID reads the usual text form, 0FC63DAF-8483-4772-8E79-3D69D8477DE4, of a GUID
// this package names (it panics on a typo).
func parseGUID(s string) guid {
	var g guid
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 {
		panic("disk: bad GUID " + s)
	}
	g[0], g[1], g[2], g[3] = b[3], b[2], b[1], b[0]
	g[4], g[5] = b[5], b[4]
	g[6], g[7] = b[7], b[6]
	copy(g[8:], b[8:])
	return g
}

func (g guid) String() string {
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X", binary.LittleEndian.Uint32(g[0:]), binary.LittleEndian.Uint16(g[4:]), binary.LittleEndian.Uint16(g[6:]), g[8:10], g[10:])
}

// The partition types cairn writes or grows.
var (
	typeLinuxFS      = parseGUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
	typeLinuxSwap    = parseGUID("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F")
	typeRootX86_64   = parseGUID("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709")
	typeRootARM64    = parseGUID("B921B045-1DF0-41C3-AF44-4C6F280D3FAE")
	typeBasicData    = parseGUID("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7")
	growableGPTTypes = []guid{typeLinuxFS, typeRootX86_64, typeRootARM64}
)

// partitionGUID is a new partition's unique GUID: from the disk's GUID and the partition's
// index, so that the same image on the same disk gets the same GUIDs (RFC 9562 version 8).
func partitionGUID(disk guid, index int) guid {
	h := sha256.Sum256(fmt.Appendf(nil, "cairn partition %x %d", disk[:], index))
	var g guid
	copy(g[:], h[:16])
	g[7] = g[7]&0x0F | 0x80 // version 8, in the high nibble of the third field
	g[8] = g[8]&0x3F | 0x80 // the RFC variant
	return g
}

// gpt is a GUID partition table as read from the primary header.
type gpt struct {
	sector      int64  // logical sector size
	backupLBA   uint64 // the alternate header's LBA
	firstUsable uint64
	lastUsable  uint64
	diskGUID    guid
	entriesLBA  uint64 // the primary entries
	numEntries  uint32
	entrySize   uint32
	entries     []byte // numEntries × entrySize, as on disk
}

// gptEntry is one entry of the array, decoded.
type gptEntry struct {
	typ, id     guid
	first, last uint64 // LBAs, inclusive
	name        string
}

func (g *gpt) entry(i int) gptEntry {
	b := g.entries[i*int(g.entrySize):]
	var e gptEntry
	copy(e.typ[:], b[0:16])
	copy(e.id[:], b[16:32])
	e.first = binary.LittleEndian.Uint64(b[32:])
	e.last = binary.LittleEndian.Uint64(b[40:])
	u := make([]uint16, 0, gptNameUnits)
	for k := range gptNameUnits {
		c := binary.LittleEndian.Uint16(b[56+2*k:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	e.name = string(utf16.Decode(u))
	return e
}

func (e gptEntry) used() bool { return e.typ != guid{} }

func (g *gpt) setEntry(i int, e gptEntry) {
	b := g.entries[i*int(g.entrySize) : (i+1)*int(g.entrySize)]
	clear(b)
	copy(b[0:16], e.typ[:])
	copy(b[16:32], e.id[:])
	binary.LittleEndian.PutUint64(b[32:], e.first)
	binary.LittleEndian.PutUint64(b[40:], e.last)
	for k, c := range utf16.Encode([]rune(e.name)) {
		binary.LittleEndian.PutUint16(b[56+2*k:], c)
	}
}

// checkName refuses a name a GPT entry cannot hold.
func checkName(name string) error {
	if n := len(utf16.Encode([]rune(name))); n > gptNameUnits {
		return fmt.Errorf("partition name %q is %d characters long, more than the %d a GPT entry holds", name, n, gptNameUnits)
	}
	return nil
}

// entrySectors is how many sectors the entry array takes.
func (g *gpt) entrySectors() uint64 {
	return (uint64(g.numEntries)*uint64(g.entrySize) + uint64(g.sector) - 1) / uint64(g.sector)
}

// readGPT reads and checks the primary GPT of d for sector size ss.
func readGPT(d *device, ss int64) (*gpt, error) {
	h, err := d.readAt(ss, ss)
	if err != nil {
		return nil, err
	}
	if string(h[:8]) != gptSignature {
		if ss != 512 {
			if b, err := d.readAt(8, 512); err == nil && string(b) == gptSignature {
				return nil, fmt.Errorf("%s: the image's GPT is laid out for 512-byte sectors, but the disk's logical sectors are %d bytes: use an image made for %d-byte sectors", d.path, ss, ss)
			}
		}
		return nil, fmt.Errorf("%s: no GPT header at LBA 1 (byte %d), though the MBR says the disk is GPT: the image's partition table is damaged; check the image and write it again", d.path, ss)
	}
	if rev := binary.LittleEndian.Uint32(h[8:]); rev>>16 != 1 {
		return nil, fmt.Errorf("%s: GPT header revision %#08x, want 1.x (0x00010000)", d.path, rev)
	}
	hs := binary.LittleEndian.Uint32(h[12:])
	if hs < gptHeaderSize || int64(hs) > ss {
		return nil, fmt.Errorf("%s: GPT header size %d, want %d to %d bytes: the image's partition table is damaged", d.path, hs, gptHeaderSize, ss)
	}
	want := binary.LittleEndian.Uint32(h[16:])
	hb := append([]byte(nil), h[:hs]...)
	clear(hb[16:20])
	if got := crc32.ChecksumIEEE(hb); got != want {
		return nil, fmt.Errorf("%s: the GPT header at LBA 1 has CRC32 %#08x but its bytes give %#08x: the image's partition table is damaged; check the image (its digest) and write it again", d.path, want, got)
	}
	if my := binary.LittleEndian.Uint64(h[24:]); my != 1 {
		return nil, fmt.Errorf("%s: the GPT header at LBA 1 says it is at LBA %d: the image's partition table is damaged", d.path, my)
	}
	g := &gpt{
		sector:      ss,
		backupLBA:   binary.LittleEndian.Uint64(h[32:]),
		firstUsable: binary.LittleEndian.Uint64(h[40:]),
		lastUsable:  binary.LittleEndian.Uint64(h[48:]),
		entriesLBA:  binary.LittleEndian.Uint64(h[72:]),
		numEntries:  binary.LittleEndian.Uint32(h[80:]),
		entrySize:   binary.LittleEndian.Uint32(h[84:]),
	}
	copy(g.diskGUID[:], h[56:72])
	if g.entrySize < 128 || g.entrySize%8 != 0 || g.entrySize > 4096 {
		return nil, fmt.Errorf("%s: GPT entries of %d bytes, want 128 or a larger multiple of 8: the image's partition table is damaged", d.path, g.entrySize)
	}
	if g.numEntries == 0 || uint64(g.numEntries)*uint64(g.entrySize) > 4*mib {
		return nil, fmt.Errorf("%s: %d GPT entries: the image's partition table is damaged", d.path, g.numEntries)
	}
	if g.entriesLBA < 2 || g.entriesLBA+g.entrySectors() > g.firstUsable || g.firstUsable > g.lastUsable || g.lastUsable >= g.backupLBA {
		return nil, fmt.Errorf("%s: GPT areas out of order (entries at LBA %d, usable LBAs %d-%d, backup header at LBA %d): the image's partition table is damaged", d.path, g.entriesLBA, g.firstUsable, g.lastUsable, g.backupLBA)
	}
	if g.entriesLBA+g.entrySectors() > uint64(d.size/ss) {
		return nil, fmt.Errorf("%s: its GPT entries end past the end of the disk", d.path)
	}
	if g.entries, err = d.readAt(int64(g.numEntries)*int64(g.entrySize), int64(g.entriesLBA)*ss); err != nil {
		return nil, err
	}
	want = binary.LittleEndian.Uint32(h[88:])
	if got := crc32.ChecksumIEEE(g.entries); got != want {
		return nil, fmt.Errorf("%s: the GPT entries at LBA %d have CRC32 %#08x but the header says %#08x: the image's partition table is damaged; check the image (its digest) and write it again", d.path, g.entriesLBA, got, want)
	}
	for i := range int(g.numEntries) {
		e := g.entry(i)
		if e.used() && (e.first > e.last || e.first < g.firstUsable || e.last > g.lastUsable) {
			return nil, fmt.Errorf("%s: GPT partition %d spans LBAs %d-%d, outside the usable LBAs %d-%d: the image's partition table is damaged", d.path, i+1, e.first, e.last, g.firstUsable, g.lastUsable)
		}
	}
	return g, nil
}

// header is the GPT header for LBA at, the other header at alt, its entries at entriesLBA.
func (g *gpt) header(at, alt, entriesLBA uint64) []byte {
	h := make([]byte, g.sector)
	copy(h, gptSignature)
	binary.LittleEndian.PutUint32(h[8:], gptRevision)
	binary.LittleEndian.PutUint32(h[12:], gptHeaderSize)
	binary.LittleEndian.PutUint64(h[24:], at)
	binary.LittleEndian.PutUint64(h[32:], alt)
	binary.LittleEndian.PutUint64(h[40:], g.firstUsable)
	binary.LittleEndian.PutUint64(h[48:], g.lastUsable)
	copy(h[56:72], g.diskGUID[:])
	binary.LittleEndian.PutUint64(h[72:], entriesLBA)
	binary.LittleEndian.PutUint32(h[80:], g.numEntries)
	binary.LittleEndian.PutUint32(h[84:], g.entrySize)
	binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(g.entries))
	binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:gptHeaderSize]))
	return h
}

// write writes the table with its backup at the disk's last LBA: the backup first, so that
// a write cut short leaves the old primary table whole.
func (g *gpt) write(d *device) error {
	ss := g.sector
	last := uint64(d.size/ss) - 1
	g.backupLBA = last
	backupEntries := last - g.entrySectors()
	entries := make([]byte, int64(g.entrySectors())*ss)
	copy(entries, g.entries)
	for _, w := range []struct {
		b  []byte
		at uint64
	}{
		{entries, backupEntries},
		{g.header(last, 1, backupEntries), last},
		{entries, g.entriesLBA},
		{g.header(1, last, g.entriesLBA), 1},
	} {
		if err := d.writeAt(w.b, int64(w.at)*ss); err != nil {
			return err
		}
	}
	return nil
}
