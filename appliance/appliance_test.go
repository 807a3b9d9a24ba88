package appliance

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestRecipeKeyIsStableHex(t *testing.T) {
	k := RecipeKey()
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(k) {
		t.Fatalf("RecipeKey() = %q, want 64 hex digits", k)
	}
	if k2 := RecipeKey(); k2 != k {
		t.Fatalf("RecipeKey() changed between calls: %s then %s", k, k2)
	}
}

func TestServiceUnit(t *testing.T) {
	b, err := recipe.ReadFile("recipe/overlay/etc/systemd/system/cairn.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify-reload", "ReloadSignal=SIGHUP", "WatchdogSec=", "Restart=on-failure", "StandardOutput=journal+console", "WantedBy=multi-user.target"} {
		if !strings.Contains(string(b), "\n"+want) {
			t.Errorf("cairn.service lacks a line starting %q", want)
		}
	}
}

func writeBase(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range BaseFiles {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCheckBase(t *testing.T) {
	dir := t.TempDir()
	writeBase(t, dir)
	if err := CheckBase(dir); err != nil {
		t.Fatalf("CheckBase(complete) = %v, want nil", err)
	}
	if err := os.Truncate(filepath.Join(dir, InitrdFile), 0); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, RootFile))
	err := CheckBase(dir)
	if err == nil || !strings.Contains(err.Error(), "[initrd.img filesystem.squashfs]") || !strings.Contains(err.Error(), "make appliance-base") {
		t.Fatalf("CheckBase(broken) = %v, want it to name initrd.img and filesystem.squashfs and say how to fix it", err)
	}
}

func TestBuildUsesCache(t *testing.T) {
	cache := t.TempDir()
	key := RecipeKey()
	dir := filepath.Join(cache, key[:16])
	writeBase(t, dir)
	if err := os.WriteFile(filepath.Join(dir, completeFile), []byte(key+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A cached base is returned without running anything, so this works without root or mmdebstrap.
	got, err := Build(context.Background(), BuildConfig{CacheDir: cache})
	if err != nil || got != dir {
		t.Fatalf("Build(cached) = %q, %v, want %q, nil", got, err, dir)
	}
	os.Remove(filepath.Join(dir, KernelFile))
	if _, err := Build(context.Background(), BuildConfig{CacheDir: cache}); err == nil || !strings.Contains(err.Error(), "remove "+dir) {
		t.Fatalf("Build(cached, broken) = %v, want an error saying to remove %s", err, dir)
	}
}

func TestParseMountinfo(t *testing.T) {
	const in = `22 1 0:21 / /run rw,nosuid shared:5 - tmpfs tmpfs rw,mode=755
30 22 11:0 / /run/live/medium ro,noatime shared:12 - iso9660 /dev/sr0 ro,norock
31 22 7:0 / /run/live/rootfs/filesystem.squashfs ro shared:13 - squashfs /dev/loop0 ro
40 22 8:1 / /mnt/with\040space ro - iso9660 /dev/sda1 ro
`
	ms, err := parseMountinfo(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []mount{
		{"/run", "tmpfs", "tmpfs"},
		{"/run/live/medium", "iso9660", "/dev/sr0"},
		{"/run/live/rootfs/filesystem.squashfs", "squashfs", "/dev/loop0"},
		{"/mnt/with space", "iso9660", "/dev/sda1"},
	}
	if len(ms) != len(want) {
		t.Fatalf("parseMountinfo = %v, want %v", ms, want)
	}
	for i := range want {
		if ms[i] != want[i] {
			t.Errorf("mount %d = %+v, want %+v", i, ms[i], want[i])
		}
	}
	if _, err := parseMountinfo(strings.NewReader("garbage line\n")); err == nil {
		t.Error("parseMountinfo(garbage) = nil error, want one")
	}
}

func TestEscapeLabel(t *testing.T) {
	for in, want := range map[string]string{"CAIRN": "CAIRN", "cairn 2026": `cairn\x202026`, "a/b": `a\x2fb`, "x_y-z.1": "x_y-z.1"} {
		if got := escapeLabel(in); got != want {
			t.Errorf("escapeLabel(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReadISOLabel(t *testing.T) {
	img := make([]byte, pvdOffset+pvdSize)
	pvd := img[pvdOffset:]
	pvd[0] = 1
	copy(pvd[1:], "CD001")
	copy(pvd[40:72], strings.Repeat(" ", 32))
	copy(pvd[40:], "CAIRN_2026")
	path := filepath.Join(t.TempDir(), "x.iso")
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadISOLabel(path); err != nil || got != "CAIRN_2026" {
		t.Fatalf("ReadISOLabel = %q, %v, want CAIRN_2026", got, err)
	}
	pvd[1] = 'X'
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadISOLabel(path); err == nil {
		t.Fatal("ReadISOLabel(not ISO) = nil error, want one")
	}
}

func TestFindMediumTimesOut(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := FindMedium(ctx, MediumConfig{Label: "CAIRN-NO-SUCH-MEDIUM-x1", Poll: 10 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), `"CAIRN-NO-SUCH-MEDIUM-x1"`) {
		t.Fatalf("FindMedium(absent) = %v, want an error naming the label", err)
	}
	if _, err := FindMedium(ctx, MediumConfig{}); err == nil || !strings.Contains(err.Error(), "medium_label") {
		t.Fatalf("FindMedium(no label) = %v, want an error naming medium_label", err)
	}
}

func TestDefaultCacheDirHonoursEnv(t *testing.T) {
	t.Setenv(CacheEnv, "/srv/bases")
	if d, err := DefaultCacheDir(); err != nil || d != "/srv/bases" {
		t.Fatalf("DefaultCacheDir() with %s set = %q, %v, want /srv/bases", CacheEnv, d, err)
	}
}

func TestWriteCairnLayer(t *testing.T) {
	exe, err := os.Executable() // the test binary: an x86-64 ELF executable like cairn
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteCairnLayer(dir, exe); err != nil {
		t.Fatalf("WriteCairnLayer(test binary) = %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, BinaryPath))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("layer binary: %v, mode %v; want mode 0755", err, fi.Mode())
	}
	script := filepath.Join(t.TempDir(), "cairn")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteCairnLayer(t.TempDir(), script); err == nil || !strings.Contains(err.Error(), "give a Linux build of cairn") {
		t.Fatalf("WriteCairnLayer(shell script) = %v, want an error asking for a Linux build", err)
	}
}
