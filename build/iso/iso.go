// Package iso masters cairn's bootable hybrid ISO with xorriso: the appliance base (kernel,
// initramfs, root squashfs), extra root filesystem layers (such as the cairn binary) as small
// squashfs images over the base, the airgap store and an optional site seed, bootable by BIOS
// (isolinux, El Torito) and UEFI (GRUB in an EFI system partition image), from a DVD or from a
// USB stick written with dd (isohybrid MBR and GPT). ISO level 3 carries files over 4 GiB. With
// the same inputs and SourceDateEpoch, two masterings give the same bytes.
//
// It does not fetch or build anything it is given: the base comes from package appliance, the
// store from package airgap; and it does not check the store's signature.
package iso

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-appliance/cairn/appliance"
)

// LiveDir holds the kernel, initramfs, root squashfs and layers on the ISO, as live-boot
// expects them. The store, the site seed and the volume label are where package appliance
// says (appliance.MediumStoreDir, MediumSiteDir, MediumLabel): the daemon looks for them there.
const LiveDir = "live"

// Config says what goes on an ISO.
type Config struct {
	// Base is a directory holding the appliance base: vmlinuz, initrd.img and
	// filesystem.squashfs (appliance.Build returns one). Required.
	Base string
	// Layers are directories, each a tree of files laid over the base's root filesystem, in
	// order (a later layer wins). Each becomes its own small squashfs on the ISO, so the base is
	// never rebuilt per build. The cairn binary goes in one: <dir>/usr/local/bin/cairn, mode 0755.
	// Owners are not kept: every file is root's.
	Layers []string
	// Store is a sealed airgap store directory (bundle.json at its top). Required. It appears on
	// the ISO as /cairn/store, with no copy made while mastering.
	Store string
	// SiteSeed is an optional site directory, shipped as /cairn/site.
	SiteSeed string
	// Output is the ISO file to write; Output + ".sha256" is written beside it. Its directory
	// must exist. An existing file is replaced only once the new one is complete.
	Output string
	// VolumeLabel names the medium; the appliance finds its store by it. 1 to 32 characters
	// from A-Z, 0-9 and _ (ISO 9660 d-characters). Empty means appliance.MediumLabel.
	VolumeLabel string
	// SourceDateEpoch stamps every file, the volume dates, the MBR id and the GPT GUIDs. Pass
	// the time from SOURCE_DATE_EPOCH for a reproducible ISO. Zero means now, which still gives
	// a working ISO, just not the same bytes twice.
	SourceDateEpoch time.Time
	// KernelArgs are added to the appliance's kernel command line, after cairn's own.
	KernelArgs []string
	// Log receives the output of xorriso, mksquashfs and the other tools. Nil discards it.
	Log io.Writer
}

// Result describes a mastered ISO.
type Result struct {
	Path   string
	SHA256 string // hex, as written to Path + ".sha256"
	Size   int64
}

var labelRE = regexp.MustCompile(`^[A-Z0-9_]{1,32}$`)

// tools are the programs Master runs, with the Debian package that has each.
var tools = [][2]string{
	{"xorriso", "xorriso"},
	{"mksquashfs", "squashfs-tools"},
	{"mkfs.fat", "dosfstools"},
	{"mcopy", "mtools"},
	{"grub-mkimage", "grub-common"},
}

// Files Master takes from Debian packages.
var (
	isolinuxBin = "/usr/lib/ISOLINUX/isolinux.bin"             // isolinux
	isohdpfx    = "/usr/lib/ISOLINUX/isohdpfx.bin"             // isolinux
	ldlinux     = "/usr/lib/syslinux/modules/bios/ldlinux.c32" // syslinux-common
	grubEFIDir  = "/usr/lib/grub/x86_64-efi"                   // grub-efi-amd64-bin
)

// check validates cfg and returns it with defaults filled in.
func (cfg Config) check() (Config, error) {
	if cfg.VolumeLabel == "" {
		cfg.VolumeLabel = appliance.MediumLabel
	}
	if !labelRE.MatchString(cfg.VolumeLabel) {
		return cfg, fmt.Errorf("volume label %q: expected 1 to 32 characters from A-Z, 0-9 and _", cfg.VolumeLabel)
	}
	if cfg.SourceDateEpoch.IsZero() {
		cfg.SourceDateEpoch = time.Now()
	}
	cfg.SourceDateEpoch = cfg.SourceDateEpoch.UTC().Truncate(time.Second)
	if cfg.SourceDateEpoch.Year() < 1980 || cfg.SourceDateEpoch.Year() > 2999 {
		return cfg, fmt.Errorf("source date %s: expected a time between 1980 and 2999 (FAT and ISO 9660 cannot hold others)", cfg.SourceDateEpoch)
	}
	if cfg.Output == "" {
		return cfg, errors.New("no output file given")
	}
	if cfg.Base == "" {
		return cfg, errors.New("no appliance base given (a directory with vmlinuz, initrd.img and filesystem.squashfs)")
	}
	for _, f := range []string{"vmlinuz", "initrd.img", "filesystem.squashfs"} {
		if fi, err := os.Stat(filepath.Join(cfg.Base, f)); err != nil || !fi.Mode().IsRegular() {
			return cfg, fmt.Errorf("appliance base %s: no %s; expected vmlinuz, initrd.img and filesystem.squashfs (make appliance-base builds a base)", cfg.Base, f)
		}
	}
	if cfg.Store == "" {
		return cfg, errors.New("no store given (the directory cairn build wrote, with bundle.json)")
	}
	if _, err := os.Stat(filepath.Join(cfg.Store, "bundle.json")); err != nil {
		return cfg, fmt.Errorf("store %s: no bundle.json; give a sealed store (the directory cairn build writes)", cfg.Store)
	}
	for i, l := range cfg.Layers {
		if fi, err := os.Stat(l); err != nil || !fi.IsDir() {
			return cfg, fmt.Errorf("layer %d (%s): expected a directory of files to lay over the root filesystem", i+1, l)
		}
	}
	if cfg.SiteSeed != "" {
		if fi, err := os.Stat(cfg.SiteSeed); err != nil || !fi.IsDir() {
			return cfg, fmt.Errorf("site seed %s: expected a site directory", cfg.SiteSeed)
		}
	}
	for _, a := range cfg.KernelArgs {
		if a == "" || strings.ContainsAny(a, " \t\n\"'") {
			return cfg, fmt.Errorf("kernel argument %q: expected one word with no spaces or quotes", a)
		}
	}
	return cfg, nil
}

// Master writes the ISO that cfg describes and its .sha256 file.
func Master(ctx context.Context, cfg Config) (*Result, error) {
	cfg, err := cfg.check()
	if err != nil {
		return nil, fmt.Errorf("mastering ISO: %w", err)
	}
	for _, t := range tools {
		if _, err := exec.LookPath(t[0]); err != nil {
			return nil, fmt.Errorf("mastering ISO: %s is not installed (Debian package %s; scripts/deps.sh installs it)", t[0], t[1])
		}
	}
	for _, f := range []string{isolinuxBin, isohdpfx, ldlinux, filepath.Join(grubEFIDir, "linux.mod")} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("mastering ISO: %s is missing (Debian packages isolinux, syslinux-common and grub-efi-amd64-bin; scripts/deps.sh installs them)", f)
		}
	}
	log := cfg.Log
	if log == nil {
		log = io.Discard
	}
	outDir := filepath.Dir(cfg.Output)
	work, err := os.MkdirTemp(outDir, ".cairn-iso-")
	if err != nil {
		return nil, fmt.Errorf("mastering ISO: %w", err)
	}
	defer os.RemoveAll(work)
	m := &master{cfg: cfg, work: work, log: log}
	if err := m.run(ctx); err != nil {
		return nil, fmt.Errorf("mastering ISO %s: %w", cfg.Output, err)
	}
	return m.result, nil
}

type master struct {
	cfg    Config
	work   string
	log    io.Writer
	grafts []string // xorriso pathspecs: /path/on/iso=/path/on/disk
	result *Result
}

func (m *master) graft(isoPath, diskPath string) {
	m.grafts = append(m.grafts, "/"+isoPath+"="+graftEscape.Replace(diskPath))
}

// graftEscape escapes what xorriso's -graft-points reads specially in a path.
var graftEscape = strings.NewReplacer(`\`, `\\`, "=", `\=`)

func (m *master) env() []string {
	return append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(m.cfg.SourceDateEpoch.Unix(), 10), "TZ=UTC", "LC_ALL=C")
}

func (m *master) exec(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...) //nolint:gosec // G204: the tools are fixed; the arguments are paths we chose
	var tail bytes.Buffer
	cmd.Stdout = m.log
	cmd.Stderr = io.MultiWriter(m.log, &tail)
	cmd.Env = m.env()
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(tail.String())
		if len(msg) > 2000 {
			msg = "..." + msg[len(msg)-2000:]
		}
		return fmt.Errorf("running %s: %w: %s", name, err, msg)
	}
	return nil
}

func (m *master) run(ctx context.Context) error {
	cfg := m.cfg
	// The base and the layers; filesystem.module makes live-boot stack them in this order.
	m.graft(LiveDir+"/vmlinuz", filepath.Join(cfg.Base, "vmlinuz"))
	m.graft(LiveDir+"/initrd.img", filepath.Join(cfg.Base, "initrd.img"))
	m.graft(LiveDir+"/filesystem.squashfs", filepath.Join(cfg.Base, "filesystem.squashfs"))
	images := []string{"filesystem.squashfs"}
	for i, dir := range cfg.Layers {
		name := fmt.Sprintf("layer-%02d.squashfs", i+1)
		out := filepath.Join(m.work, name)
		if err := m.squash(ctx, dir, out); err != nil {
			return fmt.Errorf("packing layer %d (%s): %w", i+1, dir, err)
		}
		m.graft(LiveDir+"/"+name, out)
		images = append(images, name)
	}
	module := filepath.Join(m.work, "filesystem.module")
	if err := m.write(module, strings.Join(images, "\n")+"\n"); err != nil {
		return err
	}
	m.graft(LiveDir+"/filesystem.module", module)

	if err := m.bootFiles(ctx); err != nil {
		return err
	}
	m.graft(appliance.MediumStoreDir, cfg.Store)
	if cfg.SiteSeed != "" {
		m.graft(appliance.MediumSiteDir, cfg.SiteSeed)
	}
	return m.xorriso(ctx)
}

// squash packs dir into a squashfs whose bytes depend only on dir's content and the source date.
func (m *master) squash(ctx context.Context, dir, out string) error {
	// SOURCE_DATE_EPOCH in the environment sets every inode's time and the filesystem's.
	return m.exec(ctx, "mksquashfs", dir, out, "-comp", "zstd", "-noappend", "-all-root",
		"-no-xattrs", "-quiet", "-no-progress")
}

// write writes a generated file and stamps it with the source date.
func (m *master) write(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Chtimes(path, m.cfg.SourceDateEpoch, m.cfg.SourceDateEpoch)
}

// kernelArgs is the appliance's kernel command line. The console goes to the first serial port
// last, so that /dev/console (and with it the daemon's ready line) is the serial console.
func (m *master) kernelArgs() string {
	args := []string{"boot=live", "live-media-path=/" + LiveDir, "nopersistence", "noeject",
		appliance.LabelArg + "=" + m.cfg.VolumeLabel, "console=tty0", "console=ttyS0,115200n8"}
	return strings.Join(append(args, m.cfg.KernelArgs...), " ")
}

func (m *master) bootFiles(ctx context.Context) error {
	cfg := m.cfg
	// BIOS: isolinux from the El Torito image, also booted through the isohybrid MBR.
	isoDir := filepath.Join(m.work, "isolinux")
	if err := os.MkdirAll(isoDir, 0o750); err != nil {
		return err
	}
	for _, f := range []string{isolinuxBin, ldlinux} {
		if err := copyFile(f, filepath.Join(isoDir, filepath.Base(f)), cfg.SourceDateEpoch); err != nil {
			return err
		}
	}
	isolinuxCfg := fmt.Sprintf(`SERIAL 0 115200
PROMPT 0
TIMEOUT 0
DEFAULT cairn
LABEL cairn
  KERNEL /%[1]s/vmlinuz
  APPEND initrd=/%[1]s/initrd.img %[2]s
`, LiveDir, m.kernelArgs())
	if err := m.write(filepath.Join(isoDir, "isolinux.cfg"), isolinuxCfg); err != nil {
		return err
	}
	m.graft("isolinux", isoDir)

	// UEFI: GRUB with an embedded config that finds the ISO by its label, then reads grub.cfg.
	grubDir := filepath.Join(m.work, "grub")
	grubCfg := fmt.Sprintf(`serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=0
set default=0
menuentry "cairn appliance" {
  linux /%[1]s/vmlinuz %[2]s
  initrd /%[1]s/initrd.img
}
`, LiveDir, m.kernelArgs())
	if err := m.write(filepath.Join(grubDir, "grub.cfg"), grubCfg); err != nil {
		return err
	}
	early := filepath.Join(m.work, "early.cfg")
	if err := m.write(early, fmt.Sprintf("search --no-floppy --set=root --label %s\nset prefix=($root)/boot/grub\nconfigfile $prefix/grub.cfg\n", cfg.VolumeLabel)); err != nil {
		return err
	}
	efiBin := filepath.Join(m.work, "bootx64.efi")
	if err := m.exec(ctx, "grub-mkimage", "-O", "x86_64-efi", "-d", grubEFIDir, "-o", efiBin, "-p", "/boot/grub", "-c", early,
		"part_gpt", "part_msdos", "iso9660", "fat", "search", "search_label", "search_fs_file", "normal", "configfile",
		"linux", "echo", "test", "serial", "terminal", "efi_gop", "all_video", "gzio", "zstd"); err != nil {
		return err
	}
	if err := os.Chtimes(efiBin, cfg.SourceDateEpoch, cfg.SourceDateEpoch); err != nil {
		return err
	}
	espImg := filepath.Join(grubDir, "efi.img")
	if err := m.esp(ctx, efiBin, espImg); err != nil {
		return fmt.Errorf("making the EFI system partition image: %w", err)
	}
	m.graft("boot/grub", grubDir)
	m.graft("EFI/boot/bootx64.efi", efiBin)
	return nil
}

// esp makes a FAT image holding EFI/boot/bootx64.efi. mkfs.fat --invariant and a fixed volume
// id, and mtools under SOURCE_DATE_EPOCH, make it the same bytes every time.
func (m *master) esp(ctx context.Context, efiBin, img string) error {
	fi, err := os.Stat(efiBin)
	if err != nil {
		return err
	}
	kib := (fi.Size()/1024 + 1024 + 1023) / 1024 * 1024 // the binary plus 1 MiB, in whole MiB
	if err := m.exec(ctx, "mkfs.fat", "-C", "--invariant", "-i", "CA1E0001", "-n", "CAIRN_EFI", img, strconv.FormatInt(kib, 10)); err != nil {
		return err
	}
	if err := m.exec(ctx, "mmd", "-i", img, "::/EFI", "::/EFI/boot"); err != nil {
		return err
	}
	if err := m.exec(ctx, "mcopy", "-m", "-i", img, efiBin, "::/EFI/boot/bootx64.efi"); err != nil {
		return err
	}
	return os.Chtimes(img, m.cfg.SourceDateEpoch, m.cfg.SourceDateEpoch)
}

func (m *master) xorriso(ctx context.Context) error {
	cfg := m.cfg
	stamp := cfg.SourceDateEpoch.Format("2006010215040500")
	tmp := filepath.Join(m.work, "out.iso")
	args := []string{"-as", "mkisofs",
		"-o", tmp,
		"-iso-level", "3", "-full-iso9660-filenames", "-rational-rock",
		"-volid", cfg.VolumeLabel, "-appid", "cairn", "-publisher", "cairn", "-preparer", "cairn",
		"--modification-date=" + stamp, "--set_all_file_dates", stamp, "--gpt_disk_guid", "modification-date",
		"-isohybrid-mbr", isohdpfx,
		"-eltorito-boot", "isolinux/isolinux.bin", "-eltorito-catalog", "isolinux/boot.cat",
		"-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
		"-eltorito-alt-boot", "-e", "boot/grub/efi.img", "-no-emul-boot", "-isohybrid-gpt-basdat",
		"-graft-points"}
	args = append(args, m.grafts...)
	if err := m.exec(ctx, "xorriso", args...); err != nil {
		return err
	}
	f, err := os.Open(tmp)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("hashing the ISO: %w", err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	sumTmp := tmp + ".sha256"
	if err := os.WriteFile(sumTmp, []byte(sum+"  "+filepath.Base(cfg.Output)+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, cfg.Output); err != nil {
		return err
	}
	if err := os.Rename(sumTmp, cfg.Output+".sha256"); err != nil {
		return err
	}
	m.result = &Result{Path: cfg.Output, SHA256: sum, Size: n}
	return nil
}

func copyFile(src, dst string, t time.Time) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil { //nolint:gosec // G703: dst is in our own work directory
		return err
	}
	return os.Chtimes(dst, t, t)
}
