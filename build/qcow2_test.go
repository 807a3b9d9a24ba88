package build

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/build/buildtest"
)

// qcow2Disk is a disk image made with qemu-img: its qcow2 file and what qemu-img makes of it
// as raw.
type qcow2Disk struct {
	name, qcow2, raw string
}

// qcow2Disks writes a 48 MiB disk with data in three places (the rest zero) as qcow2 plain,
// with zlib-compressed clusters and with zstd-compressed ones, and converts each back to raw
// with qemu-img, the reference. It skips the test without qemu-img (Debian package qemu-utils).
func qcow2Disks(t *testing.T) []qcow2Disk {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img is not installed (Debian package qemu-utils)")
	}
	dir := t.TempDir()
	disk := make([]byte, 48<<20)
	rng := rand.New(rand.NewSource(3))
	rng.Read(disk[:1<<20])                  // a boot sector and more
	rng.Read(disk[20<<20 : 20<<20+300<<10]) // file data, in the middle
	copy(disk[20<<20+300<<10:], bytes.Repeat([]byte("text compresses well. "), 20000))
	rng.Read(disk[len(disk)-4096:]) // a backup GPT, at the very end
	src := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(src, disk, 0o644); err != nil {
		t.Fatal(err)
	}
	var out []qcow2Disk
	for _, v := range []struct {
		name string
		args []string
	}{
		{"plain", nil},
		{"zlib", []string{"-c"}},
		{"zstd", []string{"-c", "-o", "compression_type=zstd"}},
	} {
		d := qcow2Disk{name: v.name, qcow2: filepath.Join(dir, v.name+".qcow2"), raw: filepath.Join(dir, v.name+".raw")}
		args := append([]string{"convert", "-f", "raw", "-O", "qcow2"}, v.args...)
		if b, err := exec.Command("qemu-img", append(args, src, d.qcow2)...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		if b, err := exec.Command("qemu-img", "convert", "-O", "raw", d.qcow2, d.raw).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img convert -O raw %s: %v\n%s", d.qcow2, err, b)
		}
		out = append(out, d)
	}
	return out
}

func osImageTable(name, source, sha, format string) string {
	t := fmt.Sprintf("\n[[os_image]]\nname = %q\nsource = %q\nsha256 = %q\n", name, source, sha)
	if format != "" {
		t += fmt.Sprintf("format = %q\n", format)
	}
	return t
}

// TestQcow2Converted: qcow2 images, plain and compressed, are carried as raw+zstd whose bytes
// are what qemu-img makes of them, with that disk's sha256 and size recorded; a warm rebuild
// converts nothing and needs no source.
func TestQcow2Converted(t *testing.T) {
	disks := qcow2Disks(t)
	var more string
	for i, d := range disks {
		format := ""
		if i == 2 {
			format = "qcow2" // said, rather than detected
		}
		more += osImageTable("disk-"+d.name, d.qcow2, fileSum(t, d.qcow2), format)
	}
	cfg := buildtest.Build(t, more)
	out, cache := filepath.Join(t.TempDir(), "store"), t.TempDir()
	o := Options{Config: cfg, Output: out, CacheDir: cache, Created: time.Unix(1700000000, 0)}
	start := time.Now()
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built with 3 qcow2 images of 48 MiB in %s", time.Since(start).Round(time.Millisecond))
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	converted := map[string]time.Time{}
	for _, d := range disks {
		a, blob, blobPath := payload(t, res.Index, out, airgap.KindOS, "disk-"+d.name)
		want := mustRead(t, d.raw)
		h := sha256.Sum256(want)
		if a.OS == nil || a.OS.Format != airgap.FormatRawZstd || a.OS.UncompressedDigest.String() != "sha256:"+hex.EncodeToString(h[:]) || a.OS.UncompressedSize != int64(len(want)) {
			t.Errorf("%s recorded as %+v; want raw+zstd, sha256:%x, %d bytes", d.name, a.OS, h, len(want))
		}
		got, err := dec.DecodeAll(blob, nil)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: the stored raw+zstd decodes (%v) to %d bytes that are not qemu-img's raw", d.name, err, len(got))
		}
		if zstdCLI, err := exec.LookPath("zstd"); err == nil {
			b, err := exec.Command(zstdCLI, "-d", "-c", blobPath).Output()
			if err != nil || !bytes.Equal(b, want) {
				t.Errorf("%s: zstd -d of the stored blob: %v, %d bytes, not qemu-img's raw", d.name, err, len(b))
			}
		}
		info, err := os.Stat((&Cache{Dir: cache}).convertedPath(fileSum(t, d.qcow2)))
		if err != nil {
			t.Fatalf("the cache keeps no conversion of %s: %v", d.name, err)
		}
		converted[d.name] = info.ModTime()
	}

	// Cold again, on another cache: the same bytes.
	cold := o
	cold.Output, cold.CacheDir, cold.Locked = filepath.Join(t.TempDir(), "store"), t.TempDir(), true
	if _, err := Run(context.Background(), cold); err != nil {
		t.Fatal(err)
	}
	if a, b := treeSums(t, out), treeSums(t, cold.Output); !mapsEqual(a, b) {
		t.Error("two cold builds of the same qcow2 images differ")
	}

	// Warm: neither the qcow2 files nor their cached copies are needed, and nothing is
	// converted again.
	for _, d := range disks {
		if err := os.Remove((&Cache{Dir: cache}).blobPath(fileSum(t, d.qcow2))); err != nil {
			t.Fatal(err)
		}
	}
	sums := map[string]string{}
	for _, d := range disks {
		sums[d.name] = fileSum(t, d.qcow2)
		if err := os.Remove(d.qcow2); err != nil {
			t.Fatal(err)
		}
	}
	warm := o
	warm.Output, warm.Locked = filepath.Join(t.TempDir(), "store"), true
	start = time.Now()
	if _, err := Run(context.Background(), warm); err != nil {
		t.Fatalf("a warm rebuild without the qcow2 sources: %v", err)
	}
	t.Logf("warm rebuild in %s", time.Since(start).Round(time.Millisecond))
	if a, b := treeSums(t, out), treeSums(t, warm.Output); !mapsEqual(a, b) {
		t.Error("the warm rebuild's store differs")
	}
	for _, d := range disks {
		info, err := os.Stat((&Cache{Dir: cache}).convertedPath(sums[d.name]))
		if err != nil || !info.ModTime().Equal(converted[d.name]) {
			t.Errorf("%s was converted again (%v)", d.name, err)
		}
	}
}

// TestQcow2Refused: a corrupt qcow2 image, and a file said to be qcow2 that is not, fail the
// build with an error naming the image, and leave nothing behind.
func TestQcow2Refused(t *testing.T) {
	disks := qcow2Disks(t)
	b := mustRead(t, disks[0].qcow2)
	dir := t.TempDir()
	// The L1 table's offset, pointed past the end of the file.
	badL1 := bytes.Clone(b)
	binary.BigEndian.PutUint64(badL1[40:48], uint64(len(b))*4)
	// A cluster size of 16 bytes.
	badBits := bytes.Clone(b)
	binary.BigEndian.PutUint32(badBits[20:24], 4)
	// Every L2 table entry of the data at the start of the disk pointed past the end of the
	// file: the header reads well, the data does not.
	badData := bytes.Clone(b)
	l1 := binary.BigEndian.Uint64(b[40:48])
	l2 := binary.BigEndian.Uint64(b[l1:l1+8]) &^ (1<<63 | 1<<62) & (1<<56 - 1)
	for i := uint64(0); i < 16; i++ {
		binary.BigEndian.PutUint64(badData[l2+8*i:], 1<<63|uint64(len(b))*8+i<<16)
	}
	for _, tc := range []struct {
		name    string
		content []byte
		format  string
		want    string
	}{
		{"bad-l1", badL1, "", "converting qcow2"},
		{"bad-bits", badBits, "qcow2", "converting qcow2"},
		{"bad-data", badData, "", "converting qcow2"},
		{"not-qcow2", []byte("raw bytes, not a qcow2 image"), "qcow2", "does not start as a qcow2 image does"},
	} {
		p := filepath.Join(dir, tc.name+".qcow2")
		if err := os.WriteFile(p, tc.content, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := buildtest.Build(t, osImageTable(tc.name, p, fileSum(t, p), tc.format))
		parent := t.TempDir()
		_, err := Run(context.Background(), Options{Config: cfg, Output: filepath.Join(parent, "store"), CacheDir: t.TempDir()})
		t.Logf("%s: %v", tc.name, err)
		if err == nil || !strings.Contains(err.Error(), "os_image "+tc.name) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Run = %v, want an error naming os_image %s and %q", tc.name, err, tc.name, tc.want)
		}
		if got := leftovers(t, parent, ""); len(got) != 0 {
			t.Errorf("%s: a failed build left %v", tc.name, got)
		}
	}
}
