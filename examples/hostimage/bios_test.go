package hostimage

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os/exec"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/cairn-appliance/cairn/agent/api"
)

// memDisk is a disk image in memory.
type memDisk []byte

func (m memDisk) ReadAt(p []byte, off int64) (int, error)  { return copy(p, m[off:]), nil }
func (m memDisk) WriteAt(p []byte, off int64) (int, error) { return copy(m[off:], p), nil }

// gptDisk returns a disk of n sectors with a protective MBR and a GPT whose one entry (index 2,
// so the search has to look past an empty one) has type typ and spans first..last.
func gptDisk(n int, typ []byte, first, last uint64) memDisk {
	d := make(memDisk, n*sector)
	d[0x1be+4] = 0xee // the protective MBR's partition entry
	d[0x1fe], d[0x1ff] = 0x55, 0xaa
	entries := d[2*sector : 2*sector+128*128]
	e := entries[128:]
	copy(e, typ)
	binary.LittleEndian.PutUint64(e[32:], first)
	binary.LittleEndian.PutUint64(e[40:], last)
	h := d[sector : sector+92]
	copy(h, "EFI PART")
	binary.LittleEndian.PutUint32(h[8:], 0x10000)
	binary.LittleEndian.PutUint32(h[12:], 92)
	binary.LittleEndian.PutUint64(h[72:], 2)
	binary.LittleEndian.PutUint32(h[80:], 128)
	binary.LittleEndian.PutUint32(h[84:], 128)
	binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(entries))
	binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h))
	return d
}

// grubImages returns a boot.img and a core.img of nsec sectors laid out as GRUB's are.
func grubImages(nsec int) (boot, core []byte) {
	boot = make([]byte, sector)
	boot[0] = 0xeb
	binary.LittleEndian.PutUint64(boot[bootKernelLBA:], 1)
	boot[bootDrive] = 0xff
	boot[bootDriveCheck], boot[bootDriveCheck+1] = 0xeb, 0x05
	boot[0x1fe], boot[0x1ff] = 0x55, 0xaa
	core = bytes.Repeat([]byte{0xc0}, nsec*sector-100) // the last sector is not full
	clear(core[listStart-12 : sector])
	binary.LittleEndian.PutUint64(core[listStart:], 2)
	binary.LittleEndian.PutUint16(core[listSegment:], listSegWant)
	return boot, core
}

func TestInstallBIOSBoot(t *testing.T) {
	d := gptDisk(8192, biosBootType, 2048, 4095)
	boot, core := grubImages(300)
	if err := installBIOSBoot(d, boot, core); err != nil {
		t.Fatalf("installBIOSBoot: %v", err)
	}
	if got := binary.LittleEndian.Uint64(d[bootKernelLBA:]); got != 2048 {
		t.Errorf("boot.img kernel sector = %d, want 2048", got)
	}
	if d[bootDriveCheck] != 0x90 || d[bootDriveCheck+1] != 0x90 {
		t.Errorf("boot.img drive check = % x, want 90 90", d[bootDriveCheck:bootDriveCheck+2])
	}
	if d[0x1be+4] != 0xee || d[0x1fe] != 0x55 || d[0x1ff] != 0xaa {
		t.Errorf("the MBR lost its protective partition entry or its signature")
	}
	c := d[2048*sector:]
	if got := binary.LittleEndian.Uint64(c[listStart:]); got != 2049 {
		t.Errorf("block list start = %d, want 2049", got)
	}
	if got := binary.LittleEndian.Uint16(c[listLen:]); got != 299 {
		t.Errorf("block list length = %d, want 299", got)
	}
	if got := binary.LittleEndian.Uint16(c[listSegment:]); got != listSegWant {
		t.Errorf("block list segment = %#x, want %#x", got, listSegWant)
	}
	if !bytes.Equal(c[sector:len(core)], core[sector:]) {
		t.Errorf("core.img past its first sector was not copied as is")
	}
}

func TestInstallBIOSBootErrors(t *testing.T) {
	boot, core := grubImages(300)
	otherBoot := bytes.Clone(boot)
	otherBoot[bootDrive] = 0x80
	tests := []struct {
		name       string
		disk       memDisk
		boot, core []byte
		want       string
	}{
		{"no BIOS boot partition", gptDisk(8192, make([]byte, 16), 2048, 4095), boot, core, "no BIOS boot partition"},
		{"partition too small", gptDisk(8192, biosBootType, 2048, 2100), boot, core, "make the partition bigger"},
		{"no GPT", make(memDisk, 8192*sector), boot, core, "no GPT header"},
		{"unknown boot.img", gptDisk(8192, biosBootType, 2048, 4095), otherBoot, core, "GRUB changed"},
		{"short boot.img", gptDisk(8192, biosBootType, 2048, 4095), boot[:400], core, "expected 512"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := installBIOSBoot(tt.disk, tt.boot, tt.core)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("installBIOSBoot = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestRecipeKeyAndLayout(t *testing.T) {
	if k := RecipeKey(); len(k) != 64 || k != RecipeKey() {
		t.Errorf("RecipeKey() = %q, want 64 hex digits, the same each call", k)
	}
	for _, name := range []string{"ROOT_UUID", "HOSTNAME", "DISK_MIB"} {
		if layoutValue(name) == "" {
			t.Errorf("layoutValue(%q) is empty; recipe/layout should set it", name)
		}
	}
}

func TestCachedNotBuilt(t *testing.T) {
	if _, err := Cached(t.TempDir()); err == nil || !strings.Contains(err.Error(), "make host-image") {
		t.Errorf("Cached(empty dir) = %v, want ErrNotBuilt", err)
	}
}

func TestZstdWindowFitsTheAgent(t *testing.T) {
	if _, err := exec.LookPath("zstd"); err != nil {
		t.Skip("zstd (Debian package zstd) is not installed")
	}
	// From a pipe zstd does not know the size, so the window is the largest these arguments
	// give any image.
	cmd := exec.Command("zstd", zstdArgs...)
	cmd.Stdin = bytes.NewReader(bytes.Repeat([]byte("cairn host image "), 1<<16))
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	var h zstd.Header
	if err := h.Decode(out); err != nil {
		t.Fatal(err)
	}
	if h.WindowSize == 0 || h.WindowSize > api.MaxZstdWindow {
		t.Errorf("zstd %v makes a %d-byte window; the netboot agent decodes at most agent/api.MaxZstdWindow (%d)", zstdArgs, h.WindowSize, api.MaxZstdWindow)
	}
}
