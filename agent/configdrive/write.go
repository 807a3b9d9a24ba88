package configdrive

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
)

const (
	sectorSize  = 512 // the usual logical sector; see WriteSectors for 4096
	dirEntry    = 32
	rootEntries = 512 // the usual root directory of FAT12/16: 32 sectors
	reserved    = 1   // the boot sector only
	numFATs     = 2
	media       = 0xF8
	maxFAT12    = 4084     // clusters; one more makes FAT16 (as Linux and blkid count)
	maxFAT16    = 65524    // clusters; one more would make FAT32
	maxCluster  = 32 << 10 // bytes: the largest cluster every driver takes

	attrReadOnly = 0x01
	attrHidden   = 0x02
	attrSystem   = 0x04
	attrVolume   = 0x08
	attrDir      = 0x10
	attrArchive  = 0x20
	attrLFN      = attrReadOnly | attrHidden | attrSystem | attrVolume

	lfnChars = 13 // UTF-16 units per long-name entry
)

// MinSize is the smallest volume Write lays out; the largest is about 2 GiB, as much as
// FAT16 holds with 32 KiB clusters.
const MinSize = 64 << 10

// geometry is where things are in a FAT12/16 volume, in sectors of bps bytes.
type geometry struct {
	bps        uint32 // bytes per sector
	total      uint32 // sectors in the volume
	spc        uint32 // sectors per cluster
	fatSectors uint32 // sectors per FAT
	clusters   uint32 // data clusters, numbered from 2
	fat12      bool
}

func (g geometry) rootStart() uint32 { return reserved + numFATs*g.fatSectors }
func (g geometry) dataStart() uint32 {
	return g.rootStart() + rootEntries*dirEntry/g.bps
}
func (g geometry) clusterBytes() int64        { return int64(g.spc) * int64(g.bps) }
func (g geometry) bytes(sectors uint32) int64 { return int64(sectors) * int64(g.bps) }

// layout picks the smallest cluster that keeps the volume FAT12 or FAT16.
func layout(size, bps int64) (geometry, error) {
	if bps != 512 && bps != 4096 {
		return geometry{}, fmt.Errorf("sectors of %d bytes: FAT volumes here have 512 or 4096", bps)
	}
	if size%bps != 0 {
		return geometry{}, fmt.Errorf("a volume of %d bytes is not a whole number of %d-byte sectors", size, bps)
	}
	if size < MinSize {
		return geometry{}, fmt.Errorf("a volume of %d bytes is too small: a configdrive needs at least %d bytes (16 MiB is usual)", size, MinSize)
	}
	if size > 4<<30 {
		return geometry{}, fmt.Errorf("a volume of %d bytes is larger than FAT16 holds (about 2 GiB): use a smaller configdrive", size)
	}
	total := uint32(size / bps)
	for spc := uint32(1); int64(spc)*bps <= maxCluster; spc *= 2 {
		g := geometry{bps: uint32(bps), total: total, spc: spc, fatSectors: 1}
		for {
			data := int64(total) - int64(g.dataStart())
			if data < int64(spc) {
				return geometry{}, fmt.Errorf("a volume of %d bytes leaves no room for data", size)
			}
			g.clusters = uint32(data) / spc
			g.fat12 = g.clusters <= maxFAT12
			var fatBytes uint32
			if g.fat12 {
				fatBytes = ((g.clusters+2)*3 + 1) / 2
			} else {
				fatBytes = (g.clusters + 2) * 2
			}
			need := (fatBytes + g.bps - 1) / g.bps
			if need <= g.fatSectors {
				break
			}
			g.fatSectors = need
		}
		// Counts near the FAT12/FAT16 and FAT16/FAT32 boundaries are where drivers have
		// disagreed on the kind: keep clear of them, with larger clusters.
		if g.clusters <= maxFAT12-4 || (g.clusters >= maxFAT12+16 && g.clusters <= maxFAT16-16) {
			return g, nil
		}
	}
	return geometry{}, fmt.Errorf("a volume of %d bytes is larger than FAT16 holds: use a smaller configdrive", size)
}

// entry is one root file laid out.
type entry struct {
	name    string
	short   [11]byte
	long    bool // needs VFAT long-name entries
	data    []byte
	cluster uint32 // first cluster, 0 for an empty file
	count   uint32 // clusters
}

// Write writes a FAT file system labelled label (cloud-init wants "cidata") holding files at
// its root, into w between offset and offset+size: the whole region, free space zeroed. Its
// sectors are 512 bytes, as disks with 512-byte logical sectors need (see WriteSectors).
// Deterministic: the same inputs and modTime (taken in UTC, as FAT keeps no time zone) give
// the same bytes. size is a multiple of the sector size from MinSize to about 2 GiB; label
// is at most 11 characters of printable ASCII without "*+,./:;<=>?[\]|; an empty label
// writes none.
func Write(w io.WriterAt, offset, size int64, label string, files Files, modTime time.Time) error {
	return WriteSectors(w, offset, size, sectorSize, label, files, modTime)
}

// WriteSectors is Write with sectors of sectorSize bytes, 512 or 4096: a disk whose logical
// sectors are 4096 bytes needs the latter, as Linux mounts no FAT whose sectors are smaller
// than its disk's.
func WriteSectors(w io.WriterAt, offset, size, sectorSize int64, label string, files Files, modTime time.Time) error {
	g, err := layout(size, sectorSize)
	if err != nil {
		return fmt.Errorf("configdrive: %w", err)
	}
	if offset < 0 || offset%sectorSize != 0 {
		return fmt.Errorf("configdrive: offset %d is not a multiple of the %d-byte sectors", offset, sectorSize)
	}
	lab, err := volumeLabel(label)
	if err != nil {
		return fmt.Errorf("configdrive: %w", err)
	}
	entries, err := plan(files)
	if err != nil {
		return fmt.Errorf("configdrive: %w", err)
	}

	// Directory slots: the label, then each file's long-name entries and its short entry.
	slots := 0
	if label != "" {
		slots++
	}
	for _, e := range entries {
		slots++
		if e.long {
			slots += (len(utf16.Encode([]rune(e.name))) + lfnChars - 1) / lfnChars
		}
	}
	if slots > rootEntries {
		return fmt.Errorf("configdrive: %d files need %d root directory entries, more than the %d a FAT16 root holds: write fewer files or shorter names", len(entries), slots, rootEntries)
	}

	// Clusters, in name order, each file in one run.
	next := uint32(2)
	for i := range entries {
		e := &entries[i]
		e.count = uint32((int64(len(e.data)) + g.clusterBytes() - 1) / g.clusterBytes())
		if e.count == 0 {
			continue
		}
		if uint64(next-2)+uint64(e.count) > uint64(g.clusters) {
			var need int64
			for _, e := range entries {
				need += (int64(len(e.data)) + g.clusterBytes() - 1) / g.clusterBytes() * g.clusterBytes()
			}
			return fmt.Errorf("configdrive: the files need %d bytes of clusters, more than the %d a volume of %d bytes holds: make the configdrive larger or the files smaller", need, int64(g.clusters)*g.clusterBytes(), size)
		}
		e.cluster = next
		next += e.count
	}

	meta := make([]byte, g.bytes(g.dataStart()))
	bootSector(meta[:g.bps], g, offset, lab, volumeID(label, entries, modTime))
	fat := meta[g.bytes(reserved):g.bytes(reserved+g.fatSectors)]
	setFAT(fat, g.fat12, 0, 0xFFFFF00|media)
	setFAT(fat, g.fat12, 1, 0xFFFFFFF)
	for _, e := range entries {
		for c := e.cluster; c < e.cluster+e.count; c++ {
			if c == e.cluster+e.count-1 {
				setFAT(fat, g.fat12, c, 0xFFFFFFF)
			} else {
				setFAT(fat, g.fat12, c, c+1)
			}
		}
	}
	for i := 1; i < numFATs; i++ {
		copy(meta[g.bytes(reserved+uint32(i)*g.fatSectors):], fat)
	}
	dir := meta[g.bytes(g.rootStart()):g.bytes(g.dataStart())]
	date, tod := dosTime(modTime)
	if label != "" {
		d := dir[:dirEntry]
		copy(d, lab[:])
		d[11] = attrVolume
		binary.LittleEndian.PutUint16(d[22:], tod)
		binary.LittleEndian.PutUint16(d[24:], date)
		dir = dir[dirEntry:]
	}
	for _, e := range entries {
		if e.long {
			n := longEntries(dir, e.name, e.short)
			dir = dir[n*dirEntry:]
		}
		d := dir[:dirEntry]
		copy(d, e.short[:])
		d[11] = attrArchive
		binary.LittleEndian.PutUint16(d[14:], tod)  // created
		binary.LittleEndian.PutUint16(d[16:], date) // created
		binary.LittleEndian.PutUint16(d[18:], date) // last access
		binary.LittleEndian.PutUint16(d[22:], tod)  // written
		binary.LittleEndian.PutUint16(d[24:], date) // written
		binary.LittleEndian.PutUint16(d[26:], uint16(e.cluster))
		binary.LittleEndian.PutUint32(d[28:], uint32(len(e.data)))
		dir = dir[dirEntry:]
	}

	sw := &sectionWriter{w: w, off: offset}
	if err := sw.write(meta); err != nil {
		return err
	}
	for _, e := range entries {
		if err := sw.write(e.data); err != nil {
			return err
		}
		if err := sw.zeros(int64(e.count)*g.clusterBytes() - int64(len(e.data))); err != nil {
			return err
		}
	}
	return sw.zeros(offset + size - sw.off)
}

// sectionWriter writes forward from off.
type sectionWriter struct {
	w   io.WriterAt
	off int64
}

func (s *sectionWriter) write(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if _, err := s.w.WriteAt(p, s.off); err != nil {
		return fmt.Errorf("configdrive: writing %d bytes at offset %d: %w", len(p), s.off, err)
	}
	s.off += int64(len(p))
	return nil
}

var zeroChunk = make([]byte, 1<<20)

func (s *sectionWriter) zeros(n int64) error {
	for n > 0 {
		k := min(n, int64(len(zeroChunk)))
		if err := s.write(zeroChunk[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

func bootSector(b []byte, g geometry, offset int64, label [11]byte, id uint32) {
	copy(b[0:], []byte{0xEB, 0x3C, 0x90})
	copy(b[3:11], "CAIRN   ")
	binary.LittleEndian.PutUint16(b[11:], uint16(g.bps))
	b[13] = byte(g.spc)
	binary.LittleEndian.PutUint16(b[14:], reserved)
	b[16] = numFATs
	binary.LittleEndian.PutUint16(b[17:], rootEntries)
	if g.total < 1<<16 {
		binary.LittleEndian.PutUint16(b[19:], uint16(g.total))
	} else {
		binary.LittleEndian.PutUint32(b[32:], g.total)
	}
	b[21] = media
	binary.LittleEndian.PutUint16(b[22:], uint16(g.fatSectors))
	binary.LittleEndian.PutUint16(b[24:], 32) // sectors per track, for CHS-minded readers only
	binary.LittleEndian.PutUint16(b[26:], 64) // heads, likewise
	binary.LittleEndian.PutUint32(b[28:], uint32(offset/int64(g.bps)))
	b[36] = 0x80 // drive number
	b[38] = 0x29 // extended boot signature: the three fields below are there
	binary.LittleEndian.PutUint32(b[39:], id)
	copy(b[43:54], label[:])
	if g.fat12 {
		copy(b[54:62], "FAT12   ")
	} else {
		copy(b[54:62], "FAT16   ")
	}
	// Not bootable: should anything jump here, int 18h hands over to the next boot device.
	copy(b[62:], []byte{0xCD, 0x18, 0xF4, 0xEB, 0xFD})
	b[510], b[511] = 0x55, 0xAA
}

// setFAT sets cluster c's FAT entry to v (v's high bits are cut to the entry's width).
func setFAT(fat []byte, fat12 bool, c, v uint32) {
	if !fat12 {
		binary.LittleEndian.PutUint16(fat[2*c:], uint16(v))
		return
	}
	v &= 0xFFF
	i := c + c/2
	if c&1 == 0 {
		fat[i] = byte(v)
		fat[i+1] = fat[i+1]&0xF0 | byte(v>>8)
	} else {
		fat[i] = fat[i]&0x0F | byte(v<<4)
		fat[i+1] = byte(v >> 4)
	}
}

func volumeLabel(label string) ([11]byte, error) {
	var b [11]byte
	copy(b[:], "NO NAME    ")
	if label == "" {
		return b, nil
	}
	if len(label) > 11 {
		return b, fmt.Errorf("volume label %q is longer than 11 characters", label)
	}
	if label[0] == ' ' {
		return b, fmt.Errorf("volume label %q starts with a space", label)
	}
	for _, c := range []byte(label) {
		if c < 0x20 || c > 0x7E || strings.IndexByte(`"*+,./:;<=>?[\]|`, c) >= 0 {
			return b, fmt.Errorf("volume label %q holds %q, which a FAT label does not allow: use letters, digits, - and _", label, c)
		}
	}
	copy(b[:], "           ")
	copy(b[:], label)
	return b, nil
}

// plan checks the names and gives each file its short name, in name order.
func plan(files Files) ([]entry, error) {
	names := make([]string, 0, len(files))
	for name := range files {
		if err := checkName(name); err != nil {
			return nil, err
		}
		names = append(names, name)
	}
	slices.Sort(names)
	for i, a := range names {
		for _, b := range names[i+1:] {
			if strings.EqualFold(a, b) {
				return nil, fmt.Errorf("file names %q and %q differ only in case, which FAT does not tell apart", a, b)
			}
		}
	}
	used := map[[11]byte]bool{}
	entries := make([]entry, 0, len(names))
	// Names that are short names already keep them; the others get one after.
	for _, name := range names {
		if s, ok := exactShort(name); ok {
			used[s] = true
		}
	}
	for _, name := range names {
		if int64(len(files[name])) > 0xFFFFFFFF {
			return nil, fmt.Errorf("file %q is larger than FAT's 4 GiB limit", name)
		}
		e := entry{name: name, data: files[name]}
		if s, ok := exactShort(name); ok {
			e.short = s
		} else {
			e.long = true
			e.short = shortName(name, used)
			used[e.short] = true
		}
		entries = append(entries, e)
	}
	return entries, nil
}

func checkName(name string) error {
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("file name %q is not a file name", name)
	}
	if strings.HasSuffix(name, ".") || strings.HasSuffix(name, " ") {
		return fmt.Errorf("file name %q ends with a dot or a space, which FAT drops", name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7F || strings.ContainsRune(`"*/:<>?\|`, r) {
			return fmt.Errorf("file name %q holds %q, which FAT does not allow (files sit in the root: no /)", name, r)
		}
	}
	if n := len(utf16.Encode([]rune(name))); n > 255 {
		return fmt.Errorf("file name %q is %d UTF-16 characters long, more than FAT's 255", name, n)
	}
	return nil
}

const shortChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'()-@^_`{}~"

// exactShort is name's short name when name is one already: upper case 8.3 of short-name
// characters.
func exactShort(name string) ([11]byte, bool) {
	var s [11]byte
	base, ext, dot := strings.Cut(name, ".")
	if base == "" || len(base) > 8 || len(ext) > 3 || (dot && ext == "") || strings.Contains(ext, ".") {
		return s, false
	}
	for _, c := range []byte(base + ext) {
		if strings.IndexByte(shortChars, c) < 0 {
			return s, false
		}
	}
	copy(s[:], "           ")
	copy(s[:8], base)
	copy(s[8:], ext)
	return s, true
}

// shortName makes a unique 8.3 name for a long name: its characters upper-cased, others as
// _; the name itself upper-cased when that loses nothing (mid.bin: MID.BIN), else the base
// cut to leave room for a ~N tail (network-config: NETWOR~1).
func shortName(name string, used map[[11]byte]bool) [11]byte {
	lossy := false
	clean := func(s string) string {
		var b strings.Builder
		for _, r := range strings.ToUpper(s) {
			switch {
			case r == ' ' || r == '.':
				lossy = true
			case r < 0x80 && strings.ContainsRune(shortChars, r):
				b.WriteRune(r)
			default:
				lossy = true
				b.WriteByte('_')
			}
		}
		return b.String()
	}
	base, ext := name, ""
	if i := strings.LastIndexByte(base, '.'); i > 0 {
		base, ext = base[:i], base[i+1:]
	}
	base, ext = clean(base), clean(ext)
	if len(ext) > 3 {
		ext, lossy = ext[:3], true
	}
	if base == "" {
		base, lossy = "_", true
	}
	var s [11]byte
	if !lossy && len(base) <= 8 {
		copy(s[:], "           ")
		copy(s[:8], base)
		copy(s[8:], ext)
		if !used[s] {
			return s
		}
	}
	for n := 1; ; n++ {
		tail := "~" + strconv.Itoa(n)
		b := base
		if len(b) > 8-len(tail) {
			b = b[:8-len(tail)]
		}
		copy(s[:], "           ")
		copy(s[:8], b+tail)
		copy(s[8:], ext)
		if !used[s] {
			return s
		}
	}
}

func shortChecksum(s [11]byte) byte {
	var sum byte
	for _, c := range s {
		sum = (sum&1)<<7 + sum>>1 + c
	}
	return sum
}

// longEntries writes name's VFAT long-name entries into dir, last part first, and returns
// how many it wrote.
func longEntries(dir []byte, name string, short [11]byte) int {
	u := utf16.Encode([]rune(name))
	n := (len(u) + lfnChars - 1) / lfnChars
	sum := shortChecksum(short)
	for i := range n {
		seq := n - i // physical order: the last part first
		d := dir[i*dirEntry : (i+1)*dirEntry]
		d[0] = byte(seq)
		if seq == n {
			d[0] |= 0x40
		}
		d[11] = attrLFN
		d[13] = sum
		for k := range lfnChars {
			j := (seq-1)*lfnChars + k
			var c uint16
			switch {
			case j < len(u):
				c = u[j]
			case j == len(u):
				c = 0
			default:
				c = 0xFFFF
			}
			binary.LittleEndian.PutUint16(d[lfnOffsets[k]:], c)
		}
	}
	return n
}

// lfnOffsets are where a long-name entry keeps its 13 characters.
var lfnOffsets = [lfnChars]int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30}

// dosTime is t (UTC) as FAT's date and time, clamped to the years FAT can say (1980-2107).
func dosTime(t time.Time) (date, tod uint16) {
	t = t.UTC()
	if t.Year() < 1980 {
		return 1<<5 | 1, 0
	}
	if t.Year() > 2107 {
		return 127<<9 | 12<<5 | 31, 23<<11 | 59<<5 | 29
	}
	date = uint16(t.Year()-1980)<<9 | uint16(t.Month())<<5 | uint16(t.Day())
	tod = uint16(t.Hour())<<11 | uint16(t.Minute())<<5 | uint16(t.Second()/2)
	return date, tod
}

// volumeID is the volume's serial number, from everything it holds, so that two volumes
// with different content tell apart and the same content gives the same number.
func volumeID(label string, entries []entry, modTime time.Time) uint32 {
	h := sha256.New()
	fmt.Fprintf(h, "%q %d\n", label, modTime.UTC().Unix())
	for _, e := range entries {
		fmt.Fprintf(h, "%q %d\n", e.name, len(e.data))
		h.Write(e.data)
	}
	return binary.LittleEndian.Uint32(h.Sum(nil))
}
