package hostimage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// GRUB's BIOS boot code is two pieces: boot.img, 512 bytes for the MBR, which loads the first
// sector of core.img from an LBA it carries; and core.img, whose first sector (diskboot.img)
// loads the rest from a block list at its end. grub-bios-setup writes both fields on a block
// device; on an image file we set them ourselves, as it would for a core.img embedded in a GPT
// BIOS boot partition (one contiguous run of sectors). The offsets are GRUB's
// (include/grub/i386/pc/boot.h, grub-core/boot/i386/pc/{boot,diskboot}.S):
const (
	sector = 512

	// In boot.img.
	bootBPBStart    = 0x03  // BIOS parameter block: kept from the disk's MBR
	bootBPBEnd      = 0x5a  //
	bootKernelLBA   = 0x5c  // uint64 LE: LBA of core.img's first sector (default 1)
	bootDrive       = 0x64  // byte: 0xff means "the drive the BIOS booted from"
	bootDriveCheck  = 0x66  // 2 bytes: a jmp that grub-bios-setup turns into two NOPs for hard disks
	bootNTMagic     = 0x1b8 // disk signature and partition table (to 0x1fe): kept from the MBR
	bootPartEnd     = 0x1fe //
	bootDefaultKLBA = 1

	// In diskboot.img, core.img's first sector: the first (and here only) block list entry.
	listStart   = sector - 12 // uint64 LE: LBA of core.img's second sector
	listLen     = sector - 4  // uint16 LE: sectors to load
	listSegment = sector - 2  // uint16 LE: where they go; 0x820 (0x8200) for the first entry
	listSegWant = 0x820
)

// biosBootType is the GPT partition type GUID of a BIOS boot partition
// (21686148-6449-6E6F-744E-656564454649) as it is stored on disk (mixed endian).
var biosBootType = []byte{0x48, 0x61, 0x68, 0x21, 0x49, 0x64, 0x6f, 0x6e, 0x74, 0x4e, 0x65, 0x65, 0x64, 0x45, 0x46, 0x49}

// installBIOSBootFiles installs the boot.img and core.img files into the disk image file.
func installBIOSBootFiles(disk, bootPath, corePath string) error {
	boot, err := os.ReadFile(bootPath)
	if err != nil {
		return fmt.Errorf("installing GRUB for BIOS: %w; build-image.sh should have left it", err)
	}
	core, err := os.ReadFile(corePath)
	if err != nil {
		return fmt.Errorf("installing GRUB for BIOS: %w; build-image.sh should have left it", err)
	}
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("installing GRUB for BIOS: %w", err)
	}
	if err := installBIOSBoot(f, boot, core); err != nil {
		f.Close()
		return fmt.Errorf("installing GRUB for BIOS into %s: %w", disk, err)
	}
	return f.Close()
}

// disk is what installBIOSBoot reads and writes: an image file.
type disk interface {
	io.ReaderAt
	io.WriterAt
}

// installBIOSBoot writes core.img into the disk's BIOS boot partition and boot.img into its
// MBR, keeping the MBR's partition table, with the sector pointers set for where core.img lies.
func installBIOSBoot(d disk, boot, core []byte) error {
	if len(boot) != sector {
		return fmt.Errorf("boot.img is %d bytes, expected %d", len(boot), sector)
	}
	if len(core) < 2*sector {
		return fmt.Errorf("core.img is %d bytes, expected at least %d", len(core), 2*sector)
	}
	// Refuse a GRUB whose boot.img or diskboot.img no longer has these fields where we write.
	if got := binary.LittleEndian.Uint64(boot[bootKernelLBA:]); got != bootDefaultKLBA || boot[bootDrive] != 0xff || boot[bootDriveCheck] != 0xeb {
		return fmt.Errorf("boot.img does not have GRUB's layout (kernel sector %d, boot drive %#x, drive check %#x; expected 1, 0xff, a jmp 0xeb): GRUB changed, check the offsets in bios.go", got, boot[bootDrive], boot[bootDriveCheck])
	}
	if seg := binary.LittleEndian.Uint16(core[listSegment:]); seg != listSegWant || !allZero(core[listStart-12:listStart]) {
		return fmt.Errorf("core.img's first sector does not end in GRUB's block list (segment %#x, expected %#x, and an empty entry before it): GRUB changed, check the offsets in bios.go", seg, listSegWant)
	}

	first, last, err := biosBootPartition(d)
	if err != nil {
		return err
	}
	nsec := (uint64(len(core)) + sector - 1) / sector
	if nsec > last-first+1 {
		return fmt.Errorf("core.img needs %d sectors, the BIOS boot partition has %d: make the partition bigger in recipe/layout", nsec, last-first+1)
	}
	if nsec-1 > 0xffff {
		return fmt.Errorf("core.img needs %d sectors, more than one block list entry holds", nsec)
	}

	c := make([]byte, nsec*sector)
	copy(c, core)
	binary.LittleEndian.PutUint64(c[listStart:], first+1)
	binary.LittleEndian.PutUint16(c[listLen:], uint16(nsec-1))   //nolint:gosec // G115: checked above
	if _, err := d.WriteAt(c, int64(first*sector)); err != nil { //nolint:gosec // G115: the partition lies within the disk
		return fmt.Errorf("writing core.img: %w", err)
	}

	mbr := make([]byte, sector)
	if _, err := d.ReadAt(mbr, 0); err != nil {
		return fmt.Errorf("reading the MBR: %w", err)
	}
	b := bytes.Clone(boot)
	copy(b[bootBPBStart:bootBPBEnd], mbr[bootBPBStart:bootBPBEnd])
	copy(b[bootNTMagic:bootPartEnd], mbr[bootNTMagic:bootPartEnd])
	binary.LittleEndian.PutUint64(b[bootKernelLBA:], first)
	b[bootDriveCheck], b[bootDriveCheck+1] = 0x90, 0x90
	if _, err := d.WriteAt(b, 0); err != nil {
		return fmt.Errorf("writing boot.img into the MBR: %w", err)
	}
	return nil
}

// biosBootPartition returns the first and last LBA of the disk's GPT BIOS boot partition.
func biosBootPartition(d io.ReaderAt) (first, last uint64, err error) {
	hdr := make([]byte, sector)
	if _, err := d.ReadAt(hdr, sector); err != nil {
		return 0, 0, fmt.Errorf("reading the GPT header: %w", err)
	}
	if string(hdr[:8]) != "EFI PART" {
		return 0, 0, errors.New("the disk has no GPT header at LBA 1; expected the GPT build-image.sh writes")
	}
	size := binary.LittleEndian.Uint32(hdr[12:])
	if size < 92 || size > sector {
		return 0, 0, fmt.Errorf("the GPT header says it is %d bytes; expected 92 to 512", size)
	}
	h := bytes.Clone(hdr[:size])
	want := binary.LittleEndian.Uint32(h[16:])
	clear(h[16:20])
	if got := crc32.ChecksumIEEE(h); got != want {
		return 0, 0, fmt.Errorf("the GPT header's CRC is %#x, its contents give %#x", want, got)
	}
	entriesLBA := binary.LittleEndian.Uint64(hdr[72:])
	n := binary.LittleEndian.Uint32(hdr[80:])
	esize := binary.LittleEndian.Uint32(hdr[84:])
	if esize < 128 || n > 1024 {
		return 0, 0, fmt.Errorf("the GPT has %d entries of %d bytes; expected at most 1024 of at least 128", n, esize)
	}
	entries := make([]byte, int(n)*int(esize))
	if _, err := d.ReadAt(entries, int64(entriesLBA*sector)); err != nil { //nolint:gosec // G115: a small LBA
		return 0, 0, fmt.Errorf("reading the GPT entries: %w", err)
	}
	if got, want := crc32.ChecksumIEEE(entries), binary.LittleEndian.Uint32(hdr[88:]); got != want {
		return 0, 0, fmt.Errorf("the GPT entries' CRC is %#x, their contents give %#x", want, got)
	}
	for i := 0; i < int(n); i++ {
		e := entries[i*int(esize):]
		if bytes.Equal(e[:16], biosBootType) {
			return binary.LittleEndian.Uint64(e[32:]), binary.LittleEndian.Uint64(e[40:]), nil
		}
	}
	return 0, 0, errors.New("the GPT has no BIOS boot partition (type 21686148-6449-6E6F-744E-656564454649); GRUB for BIOS needs one")
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
