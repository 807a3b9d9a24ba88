package appliance

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestDataDevice(t *testing.T) {
	for _, tc := range []struct{ cmdline, want, err string }{
		{"boot=live quiet", `/dev/disk/by-label/CAIRN-DATA`, ""},
		{"cairn.data=/dev/vdb", "/dev/vdb", ""},
		{"cairn.data=/dev/disk/by-id/virtio-data", "/dev/disk/by-id/virtio-data", ""},
		{"cairn.data=LABEL=MY DATA", `/dev/disk/by-label/MY`, ""}, // the command line splits at the space
		{"cairn.data=LABEL=site_1", "/dev/disk/by-label/site_1", ""},
		{"cairn.data=UUID=0e1f-22", "/dev/disk/by-uuid/0e1f-22", ""},
		{"cairn.data=PARTUUID=abc-1", "/dev/disk/by-partuuid/abc-1", ""},
		{"cairn.data=none", "", ""},
		{"cairn.data=vdb", "", "expected a device such as /dev/vdb"},
		{"cairn.data=/dev/../etc/passwd", "", "expected a device"},
		{"cairn.data=LABEL=", "", "LABEL wants a value"},
	} {
		got, err := DataDevice(tc.cmdline)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("DataDevice(%q) = %q, %v, want an error containing %q", tc.cmdline, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("DataDevice(%q) = %q, %v, want %q", tc.cmdline, got, err, tc.want)
		}
	}
}

// TestEscapePath holds EscapePath against systemd-escape itself.
func TestEscapePath(t *testing.T) {
	tool, err := exec.LookPath("systemd-escape")
	if err != nil {
		t.Skip("systemd-escape is not installed")
	}
	for _, p := range []string{"/dev/disk/by-label/CAIRN-DATA", "/dev/vdb", "/var/lib/cairn", "/dev/disk/by-label/a\\x20b", "/dev/disk/by-uuid/0e1f-22", "/srv/.hidden/x.y", "/"} {
		out, err := exec.Command(tool, "--path", p).Output()
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.TrimSpace(string(out)); EscapePath(p) != want {
			t.Errorf("EscapePath(%q) = %q, want %q (systemd-escape --path)", p, EscapePath(p), want)
		}
	}
	if EscapePath(DataDir)+".mount" != DataMountUnit {
		t.Errorf("DataMountUnit = %q, want %q", DataMountUnit, EscapePath(DataDir)+".mount")
	}
}

func TestDataGenerator(t *testing.T) {
	for _, tc := range []struct{ cmdline, what, devUnit string }{
		{"boot=live", "/dev/disk/by-label/CAIRN-DATA", `dev-disk-by\x2dlabel-CAIRN\x2dDATA.device`},
		{"boot=live cairn.data=/dev/vdb", "/dev/vdb", "dev-vdb.device"},
	} {
		dir := t.TempDir()
		if err := DataGenerator(dir, tc.cmdline); err != nil {
			t.Fatal(err)
		}
		unit, err := os.ReadFile(filepath.Join(dir, DataMountUnit))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"What=" + tc.what + "\n", "Where=/var/lib/cairn\n", "Type=ext4\n", "Before=cairn.service\n"} {
			if !strings.Contains(string(unit), want) {
				t.Errorf("%s: the mount unit lacks %q:\n%s", tc.cmdline, want, unit)
			}
		}
		drop, err := os.ReadFile(filepath.Join(dir, tc.devUnit+".d", "cairn-timeout.conf"))
		if err != nil || !strings.Contains(string(drop), "JobRunningTimeoutSec=90s") {
			t.Errorf("%s: the device's timeout drop-in: %q, %v", tc.cmdline, drop, err)
		}
		if tool, err := exec.LookPath("systemd-analyze"); err == nil {
			// systemd itself checks the unit (it does not need the device to be here).
			if out, err := exec.Command(tool, "verify", "--man=no", filepath.Join(dir, DataMountUnit)).CombinedOutput(); err != nil || len(out) > 0 {
				t.Errorf("systemd-analyze verify %s: %v\n%s", DataMountUnit, err, out)
			}
		}
	}
	none := t.TempDir()
	if err := DataGenerator(none, "boot=live cairn.data=none"); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(none); len(ents) != 0 {
		t.Errorf("cairn.data=none: the generator wrote %d units, want none", len(ents))
	}
	if err := DataGenerator(t.TempDir(), "cairn.data=sdb"); err == nil {
		t.Error("DataGenerator with a bad cairn.data= gave no error")
	}
}

func fileSum(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (scripts/deps.sh installs it)", tool)
		}
	}
}

func blankImage(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "data.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	return p
}

func label(t *testing.T, dev string) string {
	t.Helper()
	out, err := exec.Command("blkid", "-p", "-o", "value", "-s", "LABEL", dev).Output()
	if err != nil {
		t.Fatalf("blkid %s: %v", dev, err)
	}
	return strings.TrimSpace(string(out))
}

// TestInitDataImage prepares an image file: a blank one becomes CAIRN-DATA; one that holds a
// file system or a partition table is refused, untouched, unless forced.
func TestInitDataImage(t *testing.T) {
	needTools(t, "wipefs", "mkfs.ext4", "blkid")
	ctx := context.Background()
	img := blankImage(t, 64<<20)
	if sigs, err := Signatures(ctx, img); err != nil || len(sigs) != 0 {
		t.Fatalf("Signatures(blank) = %v, %v, want none", sigs, err)
	}
	if err := InitData(ctx, img, false); err != nil {
		t.Fatalf("InitData(blank) = %v", err)
	}
	if got := label(t, img); got != DataLabel {
		t.Fatalf("label after InitData = %q, want %q", got, DataLabel)
	}

	// Now it holds a file system: refused, untouched, and the error says what and how.
	before := fileSum(t, img)
	err := InitData(ctx, img, false)
	if !errors.Is(err, ErrNotBlank) || !strings.Contains(err.Error(), `ext4 labelled "CAIRN-DATA"`) || !strings.Contains(err.Error(), "--force") {
		t.Errorf("InitData(ext4) = %v, want ErrNotBlank naming the ext4 file system and --force", err)
	}
	if fileSum(t, img) != before {
		t.Error("a refused InitData changed the device")
	}

	// Another file system, forced: erased and prepared.
	other := blankImage(t, 64<<20)
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "PRECIOUS", other).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	if err := InitData(ctx, other, false); err == nil || !strings.Contains(err.Error(), `"PRECIOUS"`) {
		t.Errorf("InitData(PRECIOUS) = %v, want a refusal naming it", err)
	}
	if err := InitData(ctx, other, true); err != nil {
		t.Fatalf("InitData(PRECIOUS, force) = %v", err)
	}
	if got := label(t, other); got != DataLabel {
		t.Errorf("label after a forced InitData = %q, want %q", got, DataLabel)
	}

	// A partition table alone is something too.
	if _, err := exec.LookPath("sfdisk"); err == nil {
		pt := blankImage(t, 64<<20)
		cmd := exec.Command("sfdisk", "--quiet", pt)
		cmd.Stdin = strings.NewReader("label: gpt\n,,L\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sfdisk: %v\n%s", err, out)
		}
		before := fileSum(t, pt)
		if err := InitData(ctx, pt, false); !errors.Is(err, ErrNotBlank) || !strings.Contains(err.Error(), "gpt") {
			t.Errorf("InitData(gpt) = %v, want a refusal naming the partition table", err)
		}
		if fileSum(t, pt) != before {
			t.Error("a refused InitData changed the partitioned image")
		}
	}

	if err := InitData(ctx, filepath.Join(t.TempDir(), "missing"), false); err == nil {
		t.Error("InitData(missing file) gave no error")
	}
	if err := InitData(ctx, t.TempDir(), true); err == nil || !strings.Contains(err.Error(), "neither a block device nor an image file") {
		t.Errorf("InitData(directory) = %v", err)
	}
}

func TestDataDiskFromMountinfo(t *testing.T) {
	mi := filepath.Join(t.TempDir(), "mountinfo")
	content := `22 1 0:21 / / rw,relatime - overlay overlay rw,lowerdir=/run/live/rootfs/filesystem.squashfs
30 22 254:16 / /var/lib/cairn rw,noatime - ext4 /dev/vdb rw
31 22 0:40 / /srv/ram rw - tmpfs tmpfs rw
32 22 254:32 / /srv/with\040space rw - ext4 /dev/vdc rw
`
	if err := os.WriteFile(mi, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ dir, want string }{
		{"/var/lib/cairn", "/dev/vdb"},
		{"/srv/ram", ""}, // a file system in RAM is no disk
		{"/var/lib", ""}, // not a mount point: the overlay
		{"/srv/with space", "/dev/vdc"},
	} {
		if got, err := dataDisk(tc.dir, mi); err != nil || got != tc.want {
			t.Errorf("dataDisk(%q) = %q, %v, want %q", tc.dir, got, err, tc.want)
		}
	}
}
