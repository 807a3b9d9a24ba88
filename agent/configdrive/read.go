package configdrive

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf16"
)

// volume is a FAT file system being read.
type volume struct {
	r            io.ReaderAt
	offset       int64
	bps          int64 // bytes per sector
	spc          int64
	dataStart    int64 // sector
	clusters     uint32
	bits         int // 12, 16 or 32
	fat          []byte
	rootCluster  uint32 // FAT32
	rootStart    int64  // FAT12/16: sector
	rootEntries  int64  // FAT12/16
	bootLabel    string
	clusterBytes int64
}

// Read reads a FAT file system in r between offset and offset+size: its volume label (the
// root directory's, else the boot sector's; empty when it has none) and its root files.
// Subdirectories are skipped. It reads what Write writes, and FAT12, FAT16 and FAT32 volumes
// other tools make.
func Read(r io.ReaderAt, offset, size int64) (label string, files Files, err error) {
	v, err := open(r, offset, size)
	if err != nil {
		return "", nil, fmt.Errorf("configdrive: reading the FAT file system at offset %d: %w", offset, err)
	}
	label, files, err = v.root()
	if err != nil {
		return "", nil, fmt.Errorf("configdrive: reading the FAT file system at offset %d: %w", offset, err)
	}
	return label, files, nil
}

func open(r io.ReaderAt, offset, size int64) (*volume, error) {
	b := make([]byte, sectorSize)
	if _, err := r.ReadAt(b, offset); err != nil {
		return nil, fmt.Errorf("reading the boot sector: %w", err)
	}
	if b[510] != 0x55 || b[511] != 0xAA || (b[0] != 0xEB && b[0] != 0xE9) {
		return nil, errors.New("no FAT boot sector (no jump instruction or no 55 AA signature): the region holds no FAT file system")
	}
	v := &volume{r: r, offset: offset}
	v.bps = int64(binary.LittleEndian.Uint16(b[11:]))
	v.spc = int64(b[13])
	rsvd := int64(binary.LittleEndian.Uint16(b[14:]))
	nfats := int64(b[16])
	rootEnt := int64(binary.LittleEndian.Uint16(b[17:]))
	total := int64(binary.LittleEndian.Uint16(b[19:]))
	if total == 0 {
		total = int64(binary.LittleEndian.Uint32(b[32:]))
	}
	fatSize := int64(binary.LittleEndian.Uint16(b[22:]))
	fat32 := fatSize == 0
	if fat32 {
		fatSize = int64(binary.LittleEndian.Uint32(b[36:]))
	}
	switch {
	case v.bps != 512 && v.bps != 1024 && v.bps != 2048 && v.bps != 4096:
		return nil, fmt.Errorf("bytes per sector is %d, not 512, 1024, 2048 or 4096", v.bps)
	case v.spc == 0 || v.spc&(v.spc-1) != 0:
		return nil, fmt.Errorf("sectors per cluster is %d, not a power of two", v.spc)
	case rsvd == 0 || nfats == 0 || fatSize == 0:
		return nil, fmt.Errorf("reserved sectors %d, FATs %d, FAT sectors %d: none may be 0", rsvd, nfats, fatSize)
	case total*v.bps > size:
		return nil, fmt.Errorf("the volume says it is %d bytes, more than the %d bytes it is read from", total*v.bps, size)
	}
	rootSectors := (rootEnt*dirEntry + v.bps - 1) / v.bps
	v.dataStart = rsvd + nfats*fatSize + rootSectors
	if v.dataStart >= total {
		return nil, fmt.Errorf("the volume's %d sectors leave no data area after its %d sectors of FATs and root directory", total, v.dataStart)
	}
	v.clusters = uint32((total - v.dataStart) / v.spc)
	v.clusterBytes = v.spc * v.bps
	switch {
	case v.clusters <= maxFAT12:
		v.bits = 12
	case v.clusters <= maxFAT16:
		v.bits = 16
	default:
		v.bits = 32
	}
	if fat32 != (v.bits == 32) {
		return nil, fmt.Errorf("%d clusters make FAT%d, but the boot sector is laid out for the other kind", v.clusters, v.bits)
	}
	labelAt := 43
	if v.bits == 32 {
		labelAt = 71
		v.rootCluster = binary.LittleEndian.Uint32(b[44:])
	} else {
		v.rootStart = rsvd + nfats*fatSize
		v.rootEntries = rootEnt
	}
	if b[labelAt-5] == 0x29 {
		if l := strings.TrimRight(string(b[labelAt:labelAt+11]), " "); l != "NO NAME" {
			v.bootLabel = l
		}
	}
	fatBytes := ((int64(v.clusters)+2)*int64(v.bits) + 7) / 8
	if fatBytes > fatSize*v.bps {
		return nil, fmt.Errorf("the FAT of %d sectors is too small for %d clusters", fatSize, v.clusters)
	}
	v.fat = make([]byte, fatBytes+1) // FAT12 reads two bytes for the last entry
	if _, err := r.ReadAt(v.fat[:fatBytes], offset+rsvd*v.bps); err != nil {
		return nil, fmt.Errorf("reading the FAT: %w", err)
	}
	return v, nil
}

// next is the FAT entry of cluster c.
func (v *volume) next(c uint32) uint32 {
	switch v.bits {
	case 12:
		x := uint32(binary.LittleEndian.Uint16(v.fat[c+c/2:]))
		if c&1 == 1 {
			x >>= 4
		}
		x &= 0xFFF
		if x >= 0xFF7 {
			x |= 0x0FFFF000
		}
		return x
	case 16:
		x := uint32(binary.LittleEndian.Uint16(v.fat[2*c:]))
		if x >= 0xFFF7 {
			x |= 0x0FFF0000
		}
		return x
	default:
		return binary.LittleEndian.Uint32(v.fat[4*c:]) & 0x0FFFFFFF
	}
}

// chain reads the clusters from first on, at most limit bytes of them.
func (v *volume) chain(first uint32, limit int64) ([]byte, error) {
	var out []byte
	seen := make([]uint64, (v.clusters+2+63)/64)
	c := first
	for {
		if c < 2 || c >= v.clusters+2 {
			return nil, fmt.Errorf("cluster %d is outside the volume's clusters 2-%d", c, v.clusters+1)
		}
		if seen[c/64]&(1<<(c%64)) != 0 {
			return nil, fmt.Errorf("the cluster chain from %d loops back to cluster %d: the FAT is damaged", first, c)
		}
		// Read runs of consecutive clusters at once.
		run := uint32(1)
		for c+run < v.clusters+2 && v.next(c+run-1) == c+run && int64(run)*v.clusterBytes < limit-int64(len(out)) {
			run++
		}
		buf := make([]byte, int64(run)*v.clusterBytes)
		at := v.offset + (v.dataStart+int64(c-2)*v.spc)*v.bps
		if _, err := v.r.ReadAt(buf, at); err != nil {
			return nil, fmt.Errorf("reading clusters %d-%d: %w", c, c+run-1, err)
		}
		out = append(out, buf...)
		if int64(len(out)) >= limit {
			return out, nil
		}
		for k := c; k < c+run; k++ {
			seen[k/64] |= 1 << (k % 64)
		}
		last := c + run - 1
		nx := v.next(last)
		switch {
		case nx >= 0x0FFFFFF8:
			return out, nil
		case nx == 0x0FFFFFF7:
			return nil, fmt.Errorf("cluster %d is marked bad", last)
		case nx == 0:
			return nil, fmt.Errorf("cluster %d is marked free in the middle of a chain", last)
		}
		c = nx
	}
}

func (v *volume) root() (string, Files, error) {
	var dir []byte
	if v.bits == 32 {
		var err error
		// A root directory of more than 64 Ki entries is no configdrive's.
		if dir, err = v.chain(v.rootCluster, 1<<16*dirEntry); err != nil {
			return "", nil, fmt.Errorf("reading the root directory: %w", err)
		}
	} else {
		dir = make([]byte, v.rootEntries*dirEntry)
		if _, err := v.r.ReadAt(dir, v.offset+v.rootStart*v.bps); err != nil {
			return "", nil, fmt.Errorf("reading the root directory: %w", err)
		}
	}
	label := ""
	files := Files{}
	var long []uint16 // the long name being gathered
	var longSum byte
	var longNext int // the sequence number expected next, 0 when none
	for i := 0; i+dirEntry <= len(dir); i += dirEntry {
		d := dir[i : i+dirEntry]
		if d[0] == 0 {
			break
		}
		if d[0] == 0xE5 {
			longNext = 0
			continue
		}
		attr := d[11]
		if attr&0x3F == attrLFN {
			seq := int(d[0] & 0x1F)
			if d[0]&0x40 != 0 {
				long = make([]uint16, seq*lfnChars)
				longSum = d[13]
				longNext = seq
			}
			if seq == 0 || seq != longNext || d[13] != longSum {
				longNext = 0
				continue
			}
			for k, o := range lfnOffsets {
				long[(seq-1)*lfnChars+k] = binary.LittleEndian.Uint16(d[o:])
			}
			longNext--
			if longNext == 0 {
				longNext = -1 // complete: the short entry comes next
			}
			continue
		}
		var short [11]byte
		copy(short[:], d[:11])
		complete := longNext == -1 && shortChecksum(short) == longSum
		longNext = 0
		switch {
		case attr&attrVolume != 0:
			if label == "" {
				label = strings.TrimRight(string(d[:11]), " ")
			}
			continue
		case attr&attrDir != 0:
			continue
		}
		name := ""
		if complete {
			u := long
			for k, c := range u {
				if c == 0 {
					u = u[:k]
					break
				}
			}
			name = string(utf16.Decode(u))
		} else {
			name = shortString(short, d[12])
		}
		if _, dup := files[name]; dup {
			return "", nil, fmt.Errorf("the root directory holds %q twice", name)
		}
		size := int64(binary.LittleEndian.Uint32(d[28:]))
		first := uint32(binary.LittleEndian.Uint16(d[26:]))
		if v.bits == 32 {
			first |= uint32(binary.LittleEndian.Uint16(d[20:])) << 16
		}
		data := []byte{}
		if size > 0 {
			b, err := v.chain(first, size)
			if err != nil {
				return "", nil, fmt.Errorf("reading %q: %w", name, err)
			}
			if int64(len(b)) < size {
				return "", nil, fmt.Errorf("reading %q: its %d bytes of clusters hold less than its size, %d bytes", name, len(b), size)
			}
			data = b[:size]
		}
		files[name] = data
	}
	if label == "" {
		label = v.bootLabel
	}
	return label, files, nil
}

// shortString is an 8.3 name as a string, lower-cased where Windows NT's flags say so.
func shortString(s [11]byte, flags byte) string {
	if s[0] == 0x05 {
		s[0] = 0xE5
	}
	base := strings.TrimRight(string(s[:8]), " ")
	ext := strings.TrimRight(string(s[8:]), " ")
	if flags&0x08 != 0 {
		base = strings.ToLower(base)
	}
	if flags&0x10 != 0 {
		ext = strings.ToLower(ext)
	}
	if ext == "" {
		return base
	}
	return base + "." + ext
}
