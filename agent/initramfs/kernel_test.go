package initramfs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cairn-appliance/cairn/agent/initramfs/initramfstest"
)

func TestParseModInfo(t *testing.T) {
	mi := parseModInfo([]byte("license=GPL\x00\x00depends=nvme-core,nvme-auth\x00softdep=pre: crc32c realtek post: extra\x00firmware=a.bin\x00firmware=b/c.bin\x00name=nvme\x00"))
	if strings.Join(mi.Depends, " ") != "nvme-core nvme-auth" || strings.Join(mi.SoftPre, " ") != "crc32c realtek" ||
		strings.Join(mi.SoftPost, " ") != "extra" || strings.Join(mi.Firmware, " ") != "a.bin b/c.bin" {
		t.Errorf("parseModInfo = %+v", mi)
	}
	if mi := parseModInfo([]byte("depends=\x00")); len(mi.Depends) != 0 {
		t.Errorf("an empty depends= gives %q", mi.Depends)
	}
}

func TestReadModInfoOfELF(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.ko")
	if err := os.WriteFile(p, initramfstest.ELF("depends=a,b", "firmware=f.bin"), 0o644); err != nil {
		t.Fatal(err)
	}
	mi, err := ReadModInfo(p)
	if err != nil || strings.Join(mi.Depends, ",") != "a,b" || strings.Join(mi.Firmware, ",") != "f.bin" {
		t.Errorf("ReadModInfo = %+v, %v", mi, err)
	}
	if err := os.WriteFile(p, []byte("\x7fELF but not really"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadModInfo(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("ReadModInfo of a broken module = %v, want an error naming it", err)
	}
}

func sampleKernel(t *testing.T, zst bool) *Kernel {
	t.Helper()
	kp := initramfstest.Sample("6.12.1-test")
	kp.Zstd = zst
	deb := kp.Write(t, t.TempDir())
	k, err := UnpackKernel(context.Background(), deb, filepath.Join(t.TempDir(), "kernel"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func modulePaths(mods []Module) string {
	var ps []string
	for _, m := range mods {
		ps = append(ps, strings.TrimPrefix(m.Path, "6.12.1-test/kernel/"))
	}
	return strings.Join(ps, " ")
}

func TestUnpackKernelAndResolve(t *testing.T) {
	for _, zst := range []bool{false, true} {
		k := sampleKernel(t, zst)
		if k.Version != "6.12.1-test" {
			t.Errorf("version %q", k.Version)
		}
		if b, err := os.ReadFile(k.Vmlinuz()); err != nil || string(b) != initramfstest.Vmlinuz {
			t.Errorf("vmlinuz: %q, %v", b, err)
		}
		if _, err := os.Stat(filepath.Join(k.Dir, "usr")); err == nil {
			t.Error("the unpacked tree holds usr/: only boot/ and lib/modules/ belong there")
		}
		sel, err := k.Resolve([]string{"virtio-net", "r8169", "virtio_pci", "sd_mod", "virtio_scsi", "virtio_blk", "e1000", "nvme", "failover"}, false)
		if err != nil {
			t.Fatal(err)
		}
		want := "net/core/failover.ko.xz drivers/net/net_failover.ko.xz drivers/net/virtio_net.ko.xz " +
			// realtek (a soft dependency, before r8169) and libphy (a dependency of both) first
			"drivers/net/phy/libphy.ko.xz drivers/net/phy/realtek.ko.xz drivers/net/ethernet/realtek/r8169.ko.xz " +
			"drivers/scsi/scsi_common.ko.xz drivers/scsi/scsi_mod.ko.xz drivers/scsi/sd_mod.ko.xz drivers/scsi/virtio_scsi.ko.xz " +
			"drivers/block/virtio_blk.ko.zst drivers/net/ethernet/intel/e1000/e1000.ko " +
			"drivers/nvme/host/nvme-core.ko.xz drivers/nvme/host/nvme.ko.xz"
		if got := modulePaths(sel.Modules); got != want {
			t.Errorf("Resolve order:\n%s\nwant\n%s", got, want)
		}
		for _, m := range sel.Modules {
			if _, err := os.Stat(m.File); err != nil || !strings.HasPrefix(m.File, k.Dir) {
				t.Errorf("%s: file %s: %v", m.Path, m.File, err)
			}
		}
		if strings.Join(sel.Firmware, " ") != "rtl_nic/rtl8125b-2.fw rtl_nic/rtl8168h-2.fw" || strings.Join(sel.Builtin, " ") != "virtio_pci" || len(sel.Missing) != 0 {
			t.Errorf("firmware %q, built in %q, missing %q", sel.Firmware, sel.Builtin, sel.Missing)
		}
	}
}

func TestResolveMissing(t *testing.T) {
	k := sampleKernel(t, false)
	_, err := k.Resolve([]string{"virtio_net", "no_such_module", "rng-core", "mlx5_core"}, false)
	var me *MissingModulesError
	if !errors.As(err, &me) || strings.Join(me.Names, " ") != "no_such_module mlx5_core" || me.Version != "6.12.1-test" ||
		!strings.Contains(err.Error(), "no module no_such_module, mlx5_core") {
		t.Errorf("Resolve of modules the kernel lacks = %v, want a MissingModulesError naming both", err)
	}
	sel, err := k.Resolve([]string{"virtio_net", "no_such_module", "mlx5_core"}, true)
	if err != nil || strings.Join(sel.Missing, " ") != "no_such_module mlx5_core" || len(sel.Modules) != 3 {
		t.Errorf("Resolve skipping what is missing = %+v, %v", sel, err)
	}
}

func TestResolveBrokenDependencies(t *testing.T) {
	for _, tc := range []struct {
		name string
		mods []initramfstest.Module
		want string
	}{
		{"a dependency the kernel lacks", []initramfstest.Module{{Path: "kernel/a.ko.xz", ModInfo: []string{"depends=b"}}}, "module a depends on b"},
		{"a loop", []initramfstest.Module{
			{Path: "kernel/a.ko.xz", ModInfo: []string{"depends=b"}},
			{Path: "kernel/b.ko.xz", ModInfo: []string{"depends=a"}},
		}, "loop"},
	} {
		deb := initramfstest.Kernel{Version: "6.1-x", Modules: tc.mods}.Write(t, t.TempDir())
		k, err := UnpackKernel(context.Background(), deb, filepath.Join(t.TempDir(), "k"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.Resolve([]string{"a"}, false); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Resolve = %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	// Soft dependencies may loop: modprobe loads each once.
	deb := initramfstest.Kernel{Version: "6.1-x", Modules: []initramfstest.Module{
		{Path: "kernel/a.ko.xz", ModInfo: []string{"softdep=post: b"}},
		{Path: "kernel/b.ko.xz", ModInfo: []string{"softdep=pre: a"}},
	}}.Write(t, t.TempDir())
	k, err := UnpackKernel(context.Background(), deb, filepath.Join(t.TempDir(), "k"))
	if err != nil {
		t.Fatal(err)
	}
	if sel, err := k.Resolve([]string{"a"}, false); err != nil || len(sel.Modules) != 2 {
		t.Errorf("soft dependencies in a loop: %+v, %v", sel, err)
	}
}

func TestUnpackKernelRefuses(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		files []initramfstest.File
		want  string
	}{
		{"the meta-package", []initramfstest.File{{Name: "usr/share/doc/linux-image-amd64/copyright", Data: []byte("x")}}, "meta-package"},
		{"two kernels", []initramfstest.File{
			{Name: "boot/vmlinuz-1", Data: []byte("k")}, {Name: "usr/lib/modules/1/kernel/a.ko.xz", Data: []byte("m")},
			{Name: "usr/lib/modules/2/kernel/a.ko.xz", Data: []byte("m")},
		}, "2 kernels (1, 2)"},
		{"no kernel image", []initramfstest.File{{Name: "usr/lib/modules/1/kernel/a.ko.xz", Data: []byte("m")}}, "no boot/vmlinuz-1"},
	} {
		deb := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".deb")
		initramfstest.WriteDeb(t, deb, tc.files, false)
		_, err := UnpackKernel(context.Background(), deb, filepath.Join(dir, "out"))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), deb) {
			t.Errorf("%s: UnpackKernel = %v, want an error naming the package and %q", tc.name, err, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
		t.Error("a failed unpack left its tree")
	}
	junk := filepath.Join(dir, "junk.deb")
	if err := os.WriteFile(junk, []byte("not a package"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := UnpackKernel(context.Background(), junk, filepath.Join(dir, "out")); err == nil || !strings.Contains(err.Error(), "not a Debian package") {
		t.Errorf("UnpackKernel of junk = %v", err)
	}
}

// TestUnpackKernelReuses: a second unpack into the same directory reads nothing of the package.
func TestUnpackKernelReuses(t *testing.T) {
	k := sampleKernel(t, false)
	again, err := UnpackKernel(context.Background(), filepath.Join(t.TempDir(), "gone.deb"), k.Dir)
	if err != nil || again.Version != k.Version {
		t.Errorf("UnpackKernel into a full directory = %+v, %v", again, err)
	}
}

func TestFirmwareFromDebs(t *testing.T) {
	dir := t.TempDir()
	one := filepath.Join(dir, "firmware-realtek.deb")
	initramfstest.WriteDeb(t, one, []initramfstest.File{
		{Name: "lib/firmware/rtl_nic/rtl8168h-2.fw", Data: []byte("rtl8168h")},
		{Name: "lib/firmware/rtl_nic/rtl8125b-2.fw", Link: "rtl8125b-2.fw.real"},
		{Name: "lib/firmware/rtl_nic/rtl8125b-2.fw.real", Link: "/lib/firmware/rtl_nic/blob.zst"},
		{Name: "lib/firmware/rtl_nic/blob.zst", Data: []byte("zstd bytes")},
		{Name: "lib/firmware/escape.bin", Link: "../../etc/passwd"},
	}, false)
	two := filepath.Join(dir, "firmware-misc.deb")
	initramfstest.WriteDeb(t, two, []initramfstest.File{
		{Name: "usr/lib/firmware/intel/ice/ddp/ice.pkg.xz", Data: []byte("ice")},
		{Name: "usr/lib/firmware/rtl_nic/rtl8168h-2.fw", Data: []byte("not this one: the first package has it")},
	}, true)
	fws, missing, err := FirmwareFromDebs(context.Background(), []string{one, two},
		[]string{"rtl_nic/rtl8168h-2.fw", "rtl_nic/rtl8125b-2.fw", "intel/ice/ddp/ice.pkg", "escape.bin", "../x", "absent.bin", "absent.bin"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, fw := range fws {
		got = append(got, fw.Path+"="+string(fw.Data))
	}
	want := []string{"intel/ice/ddp/ice.pkg.xz=ice", "rtl_nic/rtl8125b-2.fw.zst=zstd bytes", "rtl_nic/rtl8168h-2.fw=rtl8168h"}
	if !slices.Equal(got, want) {
		t.Errorf("firmware %q, want %q", got, want)
	}
	if strings.Join(missing, " ") != "../x absent.bin escape.bin" {
		t.Errorf("missing %q", missing)
	}
}

func TestWriteFirmware(t *testing.T) {
	dir := t.TempDir()
	agent := filepath.Join(dir, "cairn-agent")
	mustWrite(t, agent, "agent")
	var out bytes.Buffer
	cfg := Config{Agent: agent, Firmware: []Firmware{{Path: "rtl_nic/b.fw", Data: []byte("b")}, {Path: "a.fw.zst", Data: []byte("a")}}}
	if err := Write(&out, cfg); err != nil {
		t.Fatal(err)
	}
	entries, order := readNewc(t, out.Bytes())
	if e := entries["lib/firmware/rtl_nic/b.fw"]; e.body != "b" {
		t.Errorf("lib/firmware/rtl_nic/b.fw holds %q", e.body)
	}
	if i, j := slices.Index(order, "lib/firmware/a.fw.zst"), slices.Index(order, "lib/firmware/rtl_nic/b.fw"); i < 0 || j < i {
		t.Errorf("firmware entries in order %q", order)
	}
	cfg.Firmware = []Firmware{{Path: "../etc/shadow"}}
	if err := Write(&out, cfg); err == nil || !strings.Contains(err.Error(), "firmware path") {
		t.Errorf("Write of firmware outside lib/firmware = %v", err)
	}
}

// TestAgentNamesStayPut: the daemon boots these names, and hosts have booted them.
func TestAgentNamesStayPut(t *testing.T) {
	if KernelArtifact != "vmlinuz" || InitramfsArtifact != "cairn-agent.initramfs" || AgentArtifact != "cairn-agent" {
		t.Errorf("artifact names changed: %q %q %q", KernelArtifact, InitramfsArtifact, AgentArtifact)
	}
}

// FuzzPackage reads anything as a kernel package and a module: errors, never a panic.
func FuzzPackage(f *testing.F) {
	f.Add(initramfstest.Deb(f, initramfstest.Sample("6.1-f").Files(f)[:3], false), initramfstest.ELF("depends=a,b", "softdep=pre: c post:", "firmware=x"))
	f.Add([]byte("!<arch>\ndata.tar.xz     0           0     0     100644  99999999  `\n"), []byte("\x7fELF\x02\x01\x01"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, deb, module []byte) {
		p := filepath.Join(dir, "k.deb")
		if err := os.WriteFile(p, deb, 0o644); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "k")
		if k, err := UnpackKernel(context.Background(), p, out); err == nil {
			_, _ = k.Resolve([]string{"a"}, true)
		}
		_ = os.RemoveAll(out)
		_, _, _ = FirmwareFromDebs(context.Background(), []string{p}, []string{"x", "y/z"})
		m := filepath.Join(dir, "m.ko")
		if err := os.WriteFile(m, module, 0o644); err != nil {
			t.Fatal(err)
		}
		_, _ = ReadModInfo(m)
	})
}
