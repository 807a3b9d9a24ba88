package disk

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// loop attaches file to a new loop device (args: -P, -b 4096 …) and detaches it when the
// test ends. It skips the test where there are no loop devices to be had.
func loop(t *testing.T, file string, args ...string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root")
	}
	if testing.Short() {
		t.Skip("attaches a loop device: not with -short")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("losetup is not installed (Debian package mount)")
	}
	out, err := exec.Command("losetup", append(append([]string{"-f", "--show"}, args...), file)...).CombinedOutput()
	if err != nil {
		t.Skipf("no loop device: losetup -f --show %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v\n%s", dev, err, out)
		}
	})
	return dev
}

// sysSectors is the size the kernel gives a block device, in 512-byte sectors.
func sysSectors(t *testing.T, name string) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/class/block", name, "size"))
	if err != nil {
		return -1
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

func readSys(p string) string {
	b, _ := os.ReadFile(filepath.Join("/sys/class/block", p))
	return strings.TrimSpace(string(b))
}

// TestLoop runs Finish, ConfigDrivePart and Wipe on real block devices: the ioctls for size,
// sector size, zeroing and re-reading the table.
func TestLoop(t *testing.T) {
	for _, tc := range []struct {
		name string
		ss   int64
		args []string
	}{
		{"512", 512, []string{"-P"}},
		{"4096", 4096, []string{"-P", "-b", "4096"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := onDisk(t, osImage(t, tc.ss), 256*mib)
			dev := loop(t, file, tc.args...)
			lay, err := Finish(dev, FinishOptions{})
			if err != nil {
				t.Fatalf("Finish(%s): %v", dev, err)
			}
			if lay.Note != "" {
				t.Errorf("Finish(%s) notes %q, want the kernel to have re-read the table", dev, lay.Note)
			}
			if lay.DiskSize != 256*mib || lay.SectorSize != tc.ss || lay.Grown == nil || lay.ConfigDrive.Size != 16*mib {
				t.Errorf("Finish(%s) = %+v", dev, lay)
			}
			name := filepath.Base(dev)
			if sysSectors(t, name+"p1") < 0 {
				t.Logf("the kernel shows no partitions of %s (ext_range %s), not even the image's: its view of the table is not checked", dev, readSys(name+"/ext_range"))
			} else if got := sysSectors(t, name+"p3"); got != 16*mib/512 {
				t.Errorf("the kernel sees %sp3 of %d sectors, want %d: the table was not re-read", name, got, 16*mib/512)
			}
			if got := sysSectors(t, name+"p2"); got >= 0 && got != lay.Grown.Size/512 {
				t.Errorf("the kernel sees %sp2 of %d sectors, want the grown %d", name, got, lay.Grown.Size/512)
			}
			checkGPT(t, file, tc.ss)
			writeConfigDrive(t, dev, lay.ConfigDrive, lay.SectorSize)
			p, ok, err := ConfigDrivePart(dev)
			if err != nil || !ok || p != lay.ConfigDrive {
				t.Fatalf("ConfigDrivePart(%s) = %v, %v, %v; want %v", dev, p, ok, err, lay.ConfigDrive)
			}
			readConfigDrive(t, dev, p)
			if _, err := os.Stat(dev + "p3"); err == nil {
				if out, err := exec.Command("blkid", "-p", "-o", "export", dev+"p3").CombinedOutput(); err != nil || !strings.Contains(string(out), "LABEL=cidata\n") {
					t.Errorf("blkid -p %sp3: %v\n%s", dev, err, out)
				}
			}
			if out, err := exec.Command("sfdisk", "--verify", dev).CombinedOutput(); err == nil && !strings.Contains(string(out), "No errors detected") {
				t.Errorf("sfdisk --verify %s:\n%s", dev, out)
			}

			if f, err := os.OpenFile(dev, os.O_RDWR, 0); err == nil {
				if err := zeroOut(f, 0, 4096); err != nil {
					t.Logf("BLKZEROOUT on %s: %v (Wipe writes zeros instead)", dev, err)
				}
				f.Close()
			}
			if err := Wipe(dev); err != nil {
				t.Fatalf("Wipe(%s): %v", dev, err)
			}
			b, _ := os.ReadFile(file)
			if !allZero(b[:mib]) || !allZero(b[len(b)-mib:]) {
				t.Errorf("Wipe(%s) left bytes in the first or the last MiB", dev)
			}
		})
	}
}

// TestLoopNoPartscan: a device whose kernel does not scan partitions gets its table and a
// note, not an error.
func TestLoopNoPartscan(t *testing.T) {
	file := onDisk(t, osImage(t, 512), 128*mib)
	dev := loop(t, file)
	lay, err := Finish(dev, FinishOptions{})
	if err != nil {
		t.Fatalf("Finish(%s): %v", dev, err)
	}
	if !strings.Contains(lay.Note, "did not re-read the partition table") {
		t.Errorf("Finish(%s) notes %q, want that the kernel did not re-read the table", dev, lay.Note)
	}
	checkGPT(t, file, 512)
	if p, ok, err := ConfigDrivePart(dev); err != nil || !ok || p != lay.ConfigDrive {
		t.Errorf("ConfigDrivePart(%s) = %v, %v, %v; want %v", dev, p, ok, err, lay.ConfigDrive)
	}
	// Old signatures of the image are not found by blkid in the configdrive's place.
	b := make([]byte, 8)
	f, _ := os.Open(file)
	defer f.Close()
	f.ReadAt(b, 64*mib-512)
	if bytes.Equal(b, []byte(gptSignature)) {
		t.Error("the image's backup header is left in the middle of the disk")
	}
}

// TestLoopWrongSectors: an image for 512-byte sectors on a disk of 4096-byte sectors is
// refused with an error that says so.
func TestLoopWrongSectors(t *testing.T) {
	file := onDisk(t, osImage(t, 512), 128*mib)
	dev := loop(t, file, "-b", "4096")
	if _, err := Finish(dev, FinishOptions{}); err == nil || !strings.Contains(err.Error(), "laid out for 512-byte sectors, but the disk's logical sectors are 4096 bytes") {
		t.Errorf("Finish(%s) = %v, want an error about the sector size", dev, err)
	}
}
