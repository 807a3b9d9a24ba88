package iso

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/airgap/airgaptest"
	"github.com/cairn-appliance/cairn/appliance"
)

// fakeBase is a base directory whose files are not bootable but have the right names: mastering
// does not look inside them.
func fakeBase(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range appliance.BaseFiles {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("not really "+f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func sealedStore(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "my=store") // '=' must reach xorriso escaped
	airgaptest.SealedStore(t, dir, "example.com/app:1")
	return dir
}

func needTools(t *testing.T) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool[0]); err != nil {
			t.Skipf("%s is not installed (Debian package %s); scripts/deps.sh installs it", tool[0], tool[1])
		}
	}
	for _, f := range []string{isolinuxBin, isohdpfx, ldlinux, grubEFIDir} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("%s is missing; scripts/deps.sh installs it", f)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	base, store := fakeBase(t), sealedStore(t)
	good := Config{Base: base, Store: store, Output: filepath.Join(t.TempDir(), "x.iso")}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"lowercase label", func(c *Config) { c.VolumeLabel = "cairn" }, `volume label "cairn": expected 1 to 32 characters`},
		{"long label", func(c *Config) { c.VolumeLabel = strings.Repeat("A", 33) }, "expected 1 to 32"},
		{"no base", func(c *Config) { c.Base = "" }, "no appliance base given"},
		{"base without squashfs", func(c *Config) { c.Base = t.TempDir() }, "no vmlinuz; expected vmlinuz, initrd.img and filesystem.squashfs (make appliance-base"},
		{"unsealed store", func(c *Config) { c.Store = t.TempDir() }, "no bundle.json; give a sealed store"},
		{"layer is a file", func(c *Config) { c.Layers = []string{filepath.Join(base, "vmlinuz")} }, "layer 1 ("},
		{"spaced kernel arg", func(c *Config) { c.KernelArgs = []string{"a b"} }, `kernel argument "a b"`},
		{"no output", func(c *Config) { c.Output = "" }, "no output file"},
		{"date before FAT", func(c *Config) { c.SourceDateEpoch = time.Unix(100, 0) }, "between 1980 and 2999"},
	} {
		cfg := good
		tc.edit(&cfg)
		_, err := Master(context.Background(), cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Master = %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

func TestMasterIsReproducibleAndHybrid(t *testing.T) {
	if testing.Short() {
		t.Skip("masters three ISOs with xorriso; skipped with -short")
	}
	needTools(t)
	base, store := fakeBase(t), sealedStore(t)
	layer := t.TempDir()
	bin := filepath.Join(layer, "usr", "local", "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "cairn"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	master := func(epoch int64) *Result {
		t.Helper()
		out := filepath.Join(t.TempDir(), "cairn.iso")
		// Touch the inputs between runs: their own times must not leak into the ISO.
		now := time.Now()
		_ = os.Chtimes(filepath.Join(bin, "cairn"), now, now)
		res, err := Master(context.Background(), Config{
			Base: base, Layers: []string{layer}, Store: store, SiteSeed: layer, Output: out,
			VolumeLabel: "CAIRN_TEST", SourceDateEpoch: time.Unix(epoch, 0),
		})
		if err != nil {
			t.Fatal(err)
		}
		sum, err := os.ReadFile(out + ".sha256")
		if err != nil {
			t.Fatal(err)
		}
		if want := res.SHA256 + "  cairn.iso\n"; string(sum) != want {
			t.Errorf("cairn.iso.sha256 = %q, want %q", sum, want)
		}
		return res
	}
	a := master(1700000000)
	time.Sleep(1100 * time.Millisecond) // a clock that leaked into the ISO would now differ
	b := master(1700000000)
	if a.SHA256 != b.SHA256 || a.Size != b.Size {
		t.Errorf("two masterings with the same inputs and date: %s (%d bytes) and %s (%d bytes), want the same", a.SHA256, a.Size, b.SHA256, b.Size)
	}
	if c := master(1700000001); c.SHA256 == a.SHA256 {
		t.Errorf("masterings one second apart gave the same sha256 %s; the date does not reach the ISO", a.SHA256)
	}

	img, err := os.ReadFile(a.Path)
	if err != nil {
		t.Fatal(err)
	}
	if label, err := appliance.ReadISOLabel(a.Path); err != nil || label != "CAIRN_TEST" {
		t.Errorf("volume label = %q, %v, want CAIRN_TEST", label, err)
	}
	if img[510] != 0x55 || img[511] != 0xaa {
		t.Errorf("no MBR boot signature: the ISO is not isohybrid")
	}
	if !bytes.Equal(img[512:520], []byte("EFI PART")) {
		t.Errorf("no GPT header at LBA 1: a dd-written stick would not show its EFI partition")
	}

	// xorriso reads back the El Torito catalog and the tree.
	out, err := exec.Command("xorriso", "-indev", a.Path, "-report_el_torito", "plain", "-find", "/", "-type", "f").CombinedOutput()
	if err != nil {
		t.Fatalf("xorriso reading the ISO: %v\n%s", err, out)
	}
	for _, want := range []string{
		"El Torito boot img :   1  BIOS", "El Torito boot img :   2  UEFI",
		"'/live/vmlinuz'", "'/live/initrd.img'", "'/live/filesystem.squashfs'", "'/live/layer-01.squashfs'",
		"'/live/filesystem.module'", "'/isolinux/isolinux.cfg'", "'/boot/grub/grub.cfg'", "'/boot/grub/efi.img'",
		"'/cairn/store/bundle.json'", "'/cairn/site/usr/local/bin/cairn'",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the ISO lacks %s; xorriso says:\n%s", want, out)
		}
	}
}

func TestKernelArgs(t *testing.T) {
	m := &master{cfg: Config{VolumeLabel: "SITE_7", KernelArgs: []string{"quiet"}}}
	got := m.kernelArgs()
	for _, want := range []string{"boot=live", "cairn.label=SITE_7", "console=tty0 console=ttyS0,115200n8"} {
		if !strings.Contains(got, want) {
			t.Errorf("kernelArgs() = %q, want it to contain %q", got, want)
		}
	}
	if !strings.HasSuffix(got, " quiet") {
		t.Errorf("kernelArgs() = %q, want the extra arguments last", got)
	}
}

func TestGraftEscape(t *testing.T) {
	m := &master{}
	m.graft("cairn/store", `/srv/a=b\c`)
	if want := `/cairn/store=/srv/a\=b\\c`; m.grafts[0] != want {
		t.Errorf("graft = %q, want %q", m.grafts[0], want)
	}
}
