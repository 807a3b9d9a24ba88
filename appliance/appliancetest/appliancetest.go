// Package appliancetest gives tests a real data disk: an image file on a loop device, prepared
// by appliance.InitData and mounted. It needs root, losetup, mount and e2fsprogs, and skips the
// test, saying why, without them.
package appliancetest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-appliance/cairn/appliance"
)

// Loop attaches a blank image file of size bytes to a loop device for the test's life and
// returns the device.
func Loop(t testing.TB, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root")
	}
	for _, tool := range []string{"losetup", "mount", "umount", "wipefs", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (scripts/deps.sh installs it)", tool)
		}
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	out, err := exec.Command("losetup", "-f", "--show", img).Output()
	if err != nil {
		t.Skipf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", dev).Run() })
	return dev
}

// Mount mounts dev at dir until the test ends.
func Mount(t testing.TB, dev, dir string) {
	t.Helper()
	if out, err := exec.Command("mount", "-t", "ext4", dev, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount %s %s: %v\n%s", dev, dir, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
}

// DataDisk makes a data disk on a loop device, mounts it at a new directory and returns the
// directory and the device.
func DataDisk(t testing.TB) (dir, dev string) {
	t.Helper()
	dev = Loop(t, 64<<20)
	if err := appliance.InitData(context.Background(), dev, false); err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	Mount(t, dev, dir)
	return dir, dev
}
