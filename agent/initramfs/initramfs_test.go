package initramfs

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
)

// modulesDep is a piece of Debian 6.12's modules.dep.
const modulesDep = `kernel/net/core/failover.ko.xz:
kernel/drivers/net/net_failover.ko.xz: kernel/net/core/failover.ko.xz
kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko.xz kernel/net/core/failover.ko.xz
kernel/drivers/scsi/scsi_common.ko.xz:
kernel/drivers/scsi/scsi_mod.ko.xz: kernel/drivers/scsi/scsi_common.ko.xz
kernel/drivers/scsi/virtio_scsi.ko.xz: kernel/drivers/scsi/scsi_mod.ko.xz kernel/drivers/scsi/scsi_common.ko.xz
kernel/drivers/scsi/sd_mod.ko.xz: kernel/drivers/scsi/scsi_mod.ko.xz kernel/drivers/scsi/scsi_common.ko.xz
kernel/drivers/nvme/common/nvme-auth.ko.xz:
kernel/drivers/nvme/host/nvme-core.ko.xz: kernel/drivers/nvme/common/nvme-auth.ko.xz
kernel/drivers/nvme/host/nvme.ko.xz: kernel/drivers/nvme/host/nvme-core.ko.xz kernel/drivers/nvme/common/nvme-auth.ko.xz
kernel/drivers/block/virtio_blk.ko.xz:
`

func TestResolveModules(t *testing.T) {
	for _, tc := range []struct {
		names []string
		want  string
	}{
		{[]string{"virtio_net"}, "kernel/net/core/failover.ko.xz kernel/drivers/net/net_failover.ko.xz kernel/drivers/net/virtio_net.ko.xz"},
		// Shared dependencies come once, before the first module that needs them.
		{[]string{"virtio_scsi", "sd_mod", "virtio-blk"}, "kernel/drivers/scsi/scsi_common.ko.xz kernel/drivers/scsi/scsi_mod.ko.xz kernel/drivers/scsi/virtio_scsi.ko.xz kernel/drivers/scsi/sd_mod.ko.xz kernel/drivers/block/virtio_blk.ko.xz"},
		// "-" in a file name is "_" in the module's name.
		{[]string{"nvme_core", "nvme"}, "kernel/drivers/nvme/common/nvme-auth.ko.xz kernel/drivers/nvme/host/nvme-core.ko.xz kernel/drivers/nvme/host/nvme.ko.xz"},
	} {
		got, err := ResolveModules(strings.NewReader(modulesDep), tc.names)
		if err != nil || strings.Join(got, " ") != tc.want {
			t.Errorf("ResolveModules(%q) = %q, %v; want %q", tc.names, got, err, tc.want)
		}
	}
	if _, err := ResolveModules(strings.NewReader(modulesDep), []string{"virtio_net", "virtio_pci", "e1000"}); err == nil ||
		!strings.Contains(err.Error(), "no module virtio_pci, e1000") || !strings.Contains(err.Error(), "modules.builtin") {
		t.Errorf("ResolveModules of modules it does not list = %v, want an error naming both", err)
	}
}

// entry is one member of an archive as the test reads it back.
type entry struct {
	mode        cpio.FileMode
	mtime       int64
	body        string
	rdevMajor   int64
	rdevMinor   int64
	headerIndex int
}

// readNewc reads a gzip-compressed newc archive with a cpio implementation other than ours,
// and the device numbers (which it does not read) from the raw headers.
func readNewc(t *testing.T, b []byte) (map[string]entry, []string) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	entries := map[string]entry{}
	var order []string
	r := cpio.NewReader(bytes.NewReader(raw))
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading the archive back: %v", err)
		}
		body, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		entries[h.Name] = entry{mode: h.Mode, mtime: h.ModTime.Unix(), body: string(body)}
		order = append(order, h.Name)
	}
	// The device numbers: the 110-byte header before the name.
	if i := bytes.Index(raw, []byte("dev/console\x00")); i >= 110 {
		h := raw[i-110 : i]
		maj, _ := strconv.ParseInt(string(h[78:86]), 16, 64)
		minor, _ := strconv.ParseInt(string(h[86:94]), 16, 64)
		e := entries["dev/console"]
		e.rdevMajor, e.rdevMinor = maj, minor
		entries["dev/console"] = e
	}
	return entries, order
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	agent := filepath.Join(dir, "cairn-agent")
	mustWrite(t, agent, "\x7fELF the agent")
	mods := []Module{
		{Path: "6.12.1-test/kernel/net/core/failover.ko.xz", File: filepath.Join(dir, "a")},
		{Path: "6.12.1-test/kernel/drivers/net/virtio_net.ko.xz", File: filepath.Join(dir, "b")},
	}
	mustWrite(t, mods[0].File, "failover")
	mustWrite(t, mods[1].File, "virtio_net!")
	mtime := time.Unix(1767225600, 0)
	var out bytes.Buffer
	if err := Write(&out, Config{Agent: agent, Modules: mods, ModTime: mtime}); err != nil {
		t.Fatal(err)
	}
	entries, order := readNewc(t, out.Bytes())

	wantOrder := []string{"dev", "proc", "sys", "run", "tmp", "dev/console", "init",
		"lib", "lib/modules", "lib/modules/6.12.1-test", "lib/modules/6.12.1-test/kernel", "lib/modules/6.12.1-test/kernel/net",
		"lib/modules/6.12.1-test/kernel/net/core", "lib/modules/6.12.1-test/kernel/net/core/failover.ko.xz",
		"lib/modules/6.12.1-test/kernel/drivers", "lib/modules/6.12.1-test/kernel/drivers/net",
		"lib/modules/6.12.1-test/kernel/drivers/net/virtio_net.ko.xz", LoadList}
	if strings.Join(order, " ") != strings.Join(wantOrder, " ") {
		t.Errorf("entries:\n%q\nwant (every directory before what it holds)\n%q", order, wantOrder)
	}
	for name, want := range map[string]struct {
		mode cpio.FileMode
		body string
	}{
		"init":        {cpio.TypeReg | 0o755, "\x7fELF the agent"},
		"dev":         {cpio.TypeDir | 0o755, ""},
		"dev/console": {cpio.TypeChar | 0o600, ""},
		LoadList:      {cpio.TypeReg | 0o644, "6.12.1-test/kernel/net/core/failover.ko.xz\n6.12.1-test/kernel/drivers/net/virtio_net.ko.xz\n"},
		"lib/modules/6.12.1-test/kernel/drivers/net/virtio_net.ko.xz": {cpio.TypeReg | 0o644, "virtio_net!"},
	} {
		e, ok := entries[name]
		if !ok || e.mode != want.mode || e.body != want.body || e.mtime != mtime.Unix() {
			t.Errorf("%s: mode %v, body %q, mtime %d (present %v); want %v, %q, %d", name, e.mode, e.body, e.mtime, ok, want.mode, want.body, mtime.Unix())
		}
	}
	if c := entries["dev/console"]; c.rdevMajor != 5 || c.rdevMinor != 1 {
		t.Errorf("dev/console is device %d:%d, want 5:1", c.rdevMajor, c.rdevMinor)
	}

	// The same inputs give the same bytes.
	var again bytes.Buffer
	if err := Write(&again, Config{Agent: agent, Modules: mods, ModTime: mtime}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), again.Bytes()) {
		t.Error("two writes of the same initramfs differ")
	}
}

func TestWriteRefuses(t *testing.T) {
	dir := t.TempDir()
	agent := filepath.Join(dir, "cairn-agent")
	mustWrite(t, agent, "x")
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no agent", Config{}, "no agent"},
		{"a module outside the tree", Config{Agent: agent, Modules: []Module{{Path: "../etc/passwd", File: agent}}}, "expected VERSION/kernel/"},
		{"a missing module", Config{Agent: agent, Modules: []Module{{Path: "6.1/kernel/x.ko.xz", File: filepath.Join(dir, "nope")}}}, "6.1/kernel/x.ko.xz"},
	} {
		if err := Write(io.Discard, tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Write() = %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

// TestModulesFromSquashfs takes modules from a squashfs laid out as Debian's root file system.
func TestModulesFromSquashfs(t *testing.T) {
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Skip("mksquashfs is not installed (Debian package squashfs-tools)")
	}
	tree := t.TempDir()
	base := filepath.Join(tree, "usr/lib/modules/6.12.1-test")
	mustWrite(t, filepath.Join(base, "modules.dep"), modulesDep)
	for _, line := range strings.Split(strings.TrimSpace(modulesDep), "\n") {
		p, _, _ := strings.Cut(line, ":")
		mustWrite(t, filepath.Join(base, p), "module "+p)
	}
	img := filepath.Join(t.TempDir(), "root.squashfs")
	if out, err := exec.Command("mksquashfs", tree, img, "-quiet", "-no-progress", "-noappend").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v: %s", err, out)
	}
	mods, err := ModulesFromSquashfs(context.Background(), img, t.TempDir(), []string{"virtio_net", "virtio_blk"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range mods {
		b, err := os.ReadFile(m.File)
		if err != nil || !strings.HasSuffix(string(b), strings.TrimPrefix(m.Path, "6.12.1-test/")) {
			t.Errorf("%s: extracted file %s holds %q, %v", m.Path, m.File, b, err)
		}
		got = append(got, m.Path)
	}
	want := "6.12.1-test/kernel/net/core/failover.ko.xz 6.12.1-test/kernel/drivers/net/net_failover.ko.xz 6.12.1-test/kernel/drivers/net/virtio_net.ko.xz 6.12.1-test/kernel/drivers/block/virtio_blk.ko.xz"
	if strings.Join(got, " ") != want {
		t.Errorf("modules %q, want %q", got, want)
	}
	if _, err := ModulesFromSquashfs(context.Background(), img, t.TempDir(), []string{"e1000"}); err == nil || !strings.Contains(err.Error(), "6.12.1-test") {
		t.Errorf("a module the kernel lacks: %v, want an error naming the kernel", err)
	}
}

func mustWrite(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
