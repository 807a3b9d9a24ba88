package disk

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/agent/configdrive"
)

var seed = configdrive.Files{
	configdrive.UserData: []byte("#cloud-config\nhostname: web-1\n"),
	configdrive.MetaData: []byte("instance-id: web-1-1\n"),
}

// writeConfigDrive writes the seed's file system into p of dev, with sectors of ss bytes.
func writeConfigDrive(t *testing.T, dev string, p Part, ss int64) {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := configdrive.WriteSectors(f, p.Start, p.Size, ss, configdrive.Label, seed, time.Unix(1796000000, 0)); err != nil {
		t.Fatalf("configdrive.Write: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func readConfigDrive(t *testing.T, dev string, p Part) {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	label, files, err := configdrive.Read(f, p.Start, p.Size)
	if err != nil {
		t.Fatalf("configdrive.Read: %v", err)
	}
	if label != configdrive.Label || len(files) != len(seed) || !bytes.Equal(files[configdrive.UserData], seed[configdrive.UserData]) {
		t.Errorf("configdrive.Read = %q, %q; want %q, %q", label, files, configdrive.Label, seed)
	}
}

func TestConfigDrivePart(t *testing.T) {
	t.Run("gpt", func(t *testing.T) {
		dev := onDisk(t, osImage(t, 512), 256*mib)
		if _, ok, err := ConfigDrivePart(dev); ok || err != nil {
			t.Fatalf("ConfigDrivePart of the bare image = %v, %v; want none", ok, err)
		}
		lay, err := Finish(dev, FinishOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p, ok, err := ConfigDrivePart(dev)
		if err != nil || !ok || p != lay.ConfigDrive {
			t.Fatalf("ConfigDrivePart = %v, %v, %v; want %v", p, ok, err, lay.ConfigDrive)
		}
		writeConfigDrive(t, dev, p, 512)
		readConfigDrive(t, dev, p)
		if _, err := exec.LookPath("blkid"); err == nil {
			out, err := exec.Command("blkid", "-p", "-o", "export", "-O", fmt.Sprint(p.Start), "-S", fmt.Sprint(p.Size), dev).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "TYPE=vfat\n") || !strings.Contains(string(out), "LABEL=cidata\n") {
				t.Errorf("blkid -p at the configdrive's offset: %v\n%s", err, out)
			}
		}
		sfdiskCheck(t, dev)
	})
	t.Run("mbr by label", func(t *testing.T) {
		img := filepath.Join(t.TempDir(), "os.img")
		m := mbr(make([]byte, 8*mib))
		m[510], m[511] = 0x55, 0xAA
		m.setEntry(0, mbrEntry{typ: mbrTypeLinux, start: 2048, count: 8192})
		os.WriteFile(img, m, 0o644)
		dev := onDisk(t, img, 64*mib)
		lay, err := Finish(dev, FinishOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// An MBR partition has no name: until its file system is written, it is not found.
		if _, ok, err := ConfigDrivePart(dev); ok || err != nil {
			t.Fatalf("ConfigDrivePart before the file system = %v, %v; want none", ok, err)
		}
		writeConfigDrive(t, dev, lay.ConfigDrive, 512)
		p, ok, err := ConfigDrivePart(dev)
		if err != nil || !ok || p != (Part{Index: 2, Start: 48 * mib, Size: 16 * mib}) {
			t.Fatalf("ConfigDrivePart = %v, %v, %v; want partition 2 at 48 MiB", p, ok, err)
		}
		readConfigDrive(t, dev, p)
		// Finish does not run twice, even where there are no names.
		if _, err := Finish(dev, FinishOptions{}); err == nil || !strings.Contains(err.Error(), "already has a configdrive") {
			t.Errorf("Finish again = %v, want an error saying it has a configdrive", err)
		}
	})
	t.Run("damaged", func(t *testing.T) {
		dev := onDisk(t, osImage(t, 512), 128*mib)
		f, _ := os.OpenFile(dev, os.O_RDWR, 0)
		f.WriteAt([]byte{0xFF}, 512+48)
		f.Close()
		if _, _, err := ConfigDrivePart(dev); err == nil || !strings.Contains(err.Error(), "CRC32") {
			t.Errorf("ConfigDrivePart of a damaged GPT = %v, want a CRC error", err)
		}
	})
}
