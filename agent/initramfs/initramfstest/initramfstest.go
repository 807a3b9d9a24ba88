// Package initramfstest makes small Debian packages for tests: a kernel package whose modules
// are tiny ELF objects with a .modinfo section, and firmware packages. Real packages are
// 100 MiB; these are a few KiB and read the same way. It is for tests only.
package initramfstest

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// File is one entry of a package's data archive.
type File struct {
	Name string // "usr/lib/firmware/rtl_nic/rtl8168h-2.fw"
	Data []byte
	Link string // when set, the entry is a symbolic link to Link
}

// Module is one module of a test kernel.
type Module struct {
	// Path is its place under lib/modules/VERSION: "kernel/drivers/net/virtio_net.ko.xz".
	Path string
	// ModInfo are its .modinfo strings: "depends=failover,net_failover", "firmware=x.bin".
	ModInfo []string
}

// Kernel describes a test kernel package.
type Kernel struct {
	Version string   // "6.12.1-test"
	Modules []Module // each compressed as its Path ends (.ko.xz, .ko.zst or .ko)
	Builtin []string // modules.builtin lines: "kernel/drivers/virtio/virtio_pci.ko"
	// Zstd packs the data archive as data.tar.zst rather than data.tar.xz.
	Zstd bool
}

// Vmlinuz is the content of every test kernel image.
const Vmlinuz = "a kernel image, for tests"

// Files lists the package's files, as Debian lays them out.
func (k Kernel) Files(tb testing.TB) []File {
	tb.Helper()
	files := []File{{Name: "boot/vmlinuz-" + k.Version, Data: []byte(Vmlinuz)}}
	var order []string
	for _, m := range k.Modules {
		obj := ELF(m.ModInfo...)
		var b []byte
		switch {
		case strings.HasSuffix(m.Path, ".xz"):
			b = compressXz(tb, obj)
		case strings.HasSuffix(m.Path, ".zst"):
			b = compressZstd(tb, obj)
		default:
			b = obj
		}
		files = append(files, File{Name: "usr/lib/modules/" + k.Version + "/" + m.Path, Data: b})
		order = append(order, strings.TrimSuffix(strings.TrimSuffix(m.Path, ".xz"), ".zst"))
	}
	files = append(files,
		File{Name: "usr/lib/modules/" + k.Version + "/modules.order", Data: []byte(strings.Join(order, "\n") + "\n")},
		File{Name: "usr/lib/modules/" + k.Version + "/modules.builtin", Data: []byte(strings.Join(k.Builtin, "\n") + "\n")},
		File{Name: "usr/share/doc/linux-image-" + k.Version + "/changelog.Debian.gz", Data: []byte("not read")},
	)
	return files
}

// Write writes the kernel package to dir and returns its path.
func (k Kernel) Write(tb testing.TB, dir string) string {
	tb.Helper()
	p := filepath.Join(dir, "linux-image-"+k.Version+"_1_amd64.deb")
	WriteDeb(tb, p, k.Files(tb), k.Zstd)
	return p
}

// WriteDeb writes a Debian package holding files (and their directories) at p.
func WriteDeb(tb testing.TB, p string, files []File, zst bool) {
	tb.Helper()
	if err := os.WriteFile(p, Deb(tb, files, zst), 0o644); err != nil { //nolint:gosec // a test file
		tb.Fatal(err)
	}
}

// Deb returns a Debian package holding files: an ar archive of debian-binary, control.tar.xz
// and data.tar.xz (or data.tar.zst).
func Deb(tb testing.TB, files []File, zst bool) []byte {
	tb.Helper()
	var data bytes.Buffer
	tw := tar.NewWriter(&data)
	mtime := time.Unix(1700000000, 0)
	dirs := map[string]bool{}
	for _, f := range files {
		var parents []string
		for d := filepath.Dir(f.Name); d != "." && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			must(tb, tw.WriteHeader(&tar.Header{Name: "./" + d + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime}))
		}
		if f.Link != "" {
			must(tb, tw.WriteHeader(&tar.Header{Name: "./" + f.Name, Typeflag: tar.TypeSymlink, Linkname: f.Link, ModTime: mtime}))
			continue
		}
		must(tb, tw.WriteHeader(&tar.Header{Name: "./" + f.Name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f.Data)), ModTime: mtime}))
		_, err := tw.Write(f.Data)
		must(tb, err)
	}
	must(tb, tw.Close())
	var control bytes.Buffer
	cw := tar.NewWriter(&control)
	ctl := []byte("Package: test\nVersion: 1\nArchitecture: amd64\n")
	must(tb, cw.WriteHeader(&tar.Header{Name: "./control", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(ctl)), ModTime: mtime}))
	_, err := cw.Write(ctl)
	must(tb, err)
	must(tb, cw.Close())

	var ar bytes.Buffer
	ar.WriteString("!<arch>\n")
	member := func(name string, b []byte) {
		fmt.Fprintf(&ar, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", name, 1700000000, 0, 0, "100644", len(b))
		ar.Write(b)
		if len(b)%2 == 1 {
			ar.WriteByte('\n')
		}
	}
	member("debian-binary", []byte("2.0\n"))
	member("control.tar.xz", compressXz(tb, control.Bytes()))
	if zst {
		member("data.tar.zst", compressZstd(tb, data.Bytes()))
	} else {
		member("data.tar.xz", compressXz(tb, data.Bytes()))
	}
	return ar.Bytes()
}

// ELF returns a minimal ELF64 relocatable object (x86-64) whose .modinfo section holds the
// strings, NUL-terminated, as a kernel module's does.
func ELF(modinfo ...string) []byte {
	var info []byte
	for _, s := range modinfo {
		info = append(info, s...)
		info = append(info, 0)
	}
	shstrtab := []byte("\x00.modinfo\x00.shstrtab\x00")
	const ehsize, shentsize = 64, 64
	infoOff := uint64(ehsize)
	strOff := infoOff + uint64(len(info))
	shOff := (strOff + uint64(len(shstrtab)) + 7) &^ 7

	var b bytes.Buffer
	le := binary.LittleEndian
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0})
	b.Write(make([]byte, 8))
	_ = binary.Write(&b, le, uint16(1))  // ET_REL
	_ = binary.Write(&b, le, uint16(62)) // EM_X86_64
	_ = binary.Write(&b, le, uint32(1))  // EV_CURRENT
	_ = binary.Write(&b, le, uint64(0))  // entry
	_ = binary.Write(&b, le, uint64(0))  // phoff
	_ = binary.Write(&b, le, shOff)
	_ = binary.Write(&b, le, uint32(0)) // flags
	_ = binary.Write(&b, le, uint16(ehsize))
	_ = binary.Write(&b, le, uint16(0)) // phentsize
	_ = binary.Write(&b, le, uint16(0)) // phnum
	_ = binary.Write(&b, le, uint16(shentsize))
	_ = binary.Write(&b, le, uint16(3)) // shnum
	_ = binary.Write(&b, le, uint16(2)) // shstrndx
	b.Write(info)
	b.Write(shstrtab)
	b.Write(make([]byte, int(shOff)-b.Len()))
	section := func(name, typ uint32, off, size uint64) {
		_ = binary.Write(&b, le, name)
		_ = binary.Write(&b, le, typ)
		_ = binary.Write(&b, le, uint64(0)) // flags
		_ = binary.Write(&b, le, uint64(0)) // addr
		_ = binary.Write(&b, le, off)
		_ = binary.Write(&b, le, size)
		_ = binary.Write(&b, le, uint32(0)) // link
		_ = binary.Write(&b, le, uint32(0)) // info
		_ = binary.Write(&b, le, uint64(1)) // addralign
		_ = binary.Write(&b, le, uint64(0)) // entsize
	}
	section(0, 0, 0, 0)
	section(1, 1, infoOff, uint64(len(info)))     // .modinfo, SHT_PROGBITS
	section(10, 3, strOff, uint64(len(shstrtab))) // .shstrtab, SHT_STRTAB
	return b.Bytes()
}

func compressXz(tb testing.TB, b []byte) []byte {
	tb.Helper()
	var out bytes.Buffer
	w, err := xz.NewWriter(&out)
	must(tb, err)
	_, err = w.Write(b)
	must(tb, err)
	must(tb, w.Close())
	return out.Bytes()
}

func compressZstd(tb testing.TB, b []byte) []byte {
	tb.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	must(tb, err)
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// Sample is a test kernel laid out like Debian's, with the dependencies of its real modules:
// virtio_net needs net_failover and failover; virtio_scsi and sd_mod need scsi_mod, which needs
// scsi_common; r8169 asks for two firmware files and has modprobe load the realtek PHY driver
// (which needs libphy) first; ice asks for its DDP package. virtio_blk is compressed with zstd,
// e1000 not at all; virtio_pci is built in.
func Sample(version string) Kernel {
	return Kernel{
		Version: version,
		Modules: []Module{
			{"kernel/net/core/failover.ko.xz", []string{"name=failover", "depends="}},
			{"kernel/drivers/net/net_failover.ko.xz", []string{"name=net_failover", "depends=failover"}},
			{"kernel/drivers/net/virtio_net.ko.xz", []string{"alias=virtio:d00000001v*", "depends=net_failover,failover", "name=virtio_net"}},
			{"kernel/drivers/scsi/scsi_common.ko.xz", []string{"depends="}},
			{"kernel/drivers/scsi/scsi_mod.ko.xz", []string{"depends=scsi_common"}},
			{"kernel/drivers/scsi/sd_mod.ko.xz", []string{"depends=scsi_mod,scsi_common"}},
			{"kernel/drivers/scsi/virtio_scsi.ko.xz", []string{"depends=scsi_mod"}},
			{"kernel/drivers/block/virtio_blk.ko.zst", []string{"depends="}},
			{"kernel/drivers/net/ethernet/intel/e1000/e1000.ko", []string{"depends="}},
			{"kernel/drivers/net/phy/libphy.ko.xz", []string{"depends="}},
			{"kernel/drivers/net/phy/realtek.ko.xz", []string{"depends=libphy"}},
			{"kernel/drivers/net/ethernet/realtek/r8169.ko.xz", []string{"firmware=rtl_nic/rtl8168h-2.fw", "firmware=rtl_nic/rtl8125b-2.fw", "softdep=pre: realtek crypto-crc32c", "depends=libphy"}},
			{"kernel/drivers/net/ethernet/intel/ice/ice.ko.xz", []string{"firmware=intel/ice/ddp/ice.pkg", "depends="}},
			{"kernel/drivers/nvme/host/nvme-core.ko.xz", []string{"depends="}},
			{"kernel/drivers/nvme/host/nvme.ko.xz", []string{"depends=nvme-core"}},
		},
		Builtin: []string{"kernel/drivers/virtio/virtio_pci.ko", "kernel/drivers/char/hw_random/rng-core.ko"},
	}
}

// Executable returns a minimal static x86-64 ELF executable, with content in its .modinfo
// section so that two differ: it stands in for cairn-agent where nothing runs it.
func Executable(content string) []byte {
	b := ELF(content)
	b[16] = 2 // e_type: ET_EXEC
	return b
}
