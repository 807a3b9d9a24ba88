package vmtest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
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
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/appliance"
	"github.com/cairn-appliance/cairn/build/iso"
)

// These tests master ISOs and read files back from them; they need no VM but write gigabytes, so
// they live in the opt-in tier. Their base is a stand-in: nothing boots from these ISOs.

func standInBase(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range appliance.BaseFiles {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("stand-in "+f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// readBack returns a local path holding isoPath (a file or directory) as read from the ISO img:
// through the kernel's iso9660 driver on a read-only loop mount when this host can (root, loop
// devices, iso9660 in the kernel), else extracted by xorriso (libisofs), which also reads
// multi-extent files. It logs which one it used.
func readBack(t *testing.T, img, isoPath string) string {
	t.Helper()
	if os.Geteuid() == 0 {
		dir := t.TempDir()
		out, err := exec.Command("mount", "-o", "loop,ro", "-t", "iso9660", img, dir).CombinedOutput()
		if err == nil {
			t.Cleanup(func() {
				if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
					t.Errorf("umount %s: %v: %s", dir, err, out)
				}
			})
			t.Logf("reading %s back through a loop mount of the ISO", isoPath)
			return filepath.Join(dir, filepath.FromSlash(isoPath))
		}
		t.Logf("cannot loop-mount the ISO here (%v: %s); extracting with xorriso instead", err, bytes.TrimSpace(out))
	} else {
		t.Log("not root, so no loop mount; extracting with xorriso instead")
	}
	dst := filepath.Join(t.TempDir(), "extracted")
	if out, err := exec.Command("xorriso", "-osirrox", "on", "-indev", img, "-extract", isoPath, dst).CombinedOutput(); err != nil {
		t.Fatalf("xorriso extracting %s from %s: %v\n%s", isoPath, img, err, out)
	}
	return dst
}

func sealStore(t *testing.T, dir string, add func(*airgap.Store) error) ed25519.PublicKey {
	t.Helper()
	ctx := context.Background()
	st, err := airgap.Create(ctx, airgap.StoreConfig{Dir: dir, Created: time.Unix(sourceDate, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if err := add(st); err != nil {
		t.Fatal(err)
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Seal(ctx, key); err != nil {
		t.Fatal(err)
	}
	return pub
}

func blobPath(root, digest string) string {
	hexd := strings.TrimPrefix(digest, "sha256:")
	return filepath.Join(root, "docker", "registry", "v2", "blobs", "sha256", hexd[:2], hexd, "data")
}

// TestFileOver4GiBOnISO puts a sparse file of 4 GiB + 1 MiB in a store, masters it (ISO level 3
// splits it into extents) and reads it back from the ISO.
func TestFileOver4GiBOnISO(t *testing.T) {
	SkipUnlessEnabled(t)
	work := t.TempDir()
	big := filepath.Join(work, "big.bin")
	const size = 4<<30 + 1<<20
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	// Random bytes at both ends and a hole between, so the size and the extents' order both show.
	head, end := make([]byte, 1<<20), make([]byte, 1<<20)
	_, _ = rand.Read(head)
	_, _ = rand.Read(end)
	if _, err := f.WriteAt(head, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(end, size-int64(len(end))); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want, err := sha256File(big)
	if err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(work, "store")
	sealStore(t, store, func(st *airgap.Store) error {
		return st.AddFile(context.Background(), airgap.File{Name: "big", Tag: "1", Path: big})
	})
	os.Remove(big)

	out := filepath.Join(work, "big.iso")
	res, err := iso.Master(context.Background(), iso.Config{Base: standInBase(t), Store: store, Output: out, SourceDateEpoch: time.Unix(sourceDate, 0)})
	if err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(store)
	if res.Size <= size {
		t.Fatalf("ISO is %d bytes, smaller than the file it should hold", res.Size)
	}
	p := readBack(t, out, "/"+appliance.MediumStoreDir+blobPath("/", "sha256:"+want))
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatalf("the big blob is not on the ISO: %v", err)
	}
	if fi.Size() != size {
		t.Errorf("size on the ISO = %d, want %d", fi.Size(), int64(size))
	}
	got, err := sha256File(p)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("sha256 on the ISO = %s, want %s", got, want)
	}
}

// TestFlippedByteOnISONamedByVerify flips one byte of a blob inside the ISO image and expects
// cairn bundle verify, run on the mounted ISO, to name that blob.
func TestFlippedByteOnISONamedByVerify(t *testing.T) {
	SkipUnlessEnabled(t)
	work := t.TempDir()
	payload := make([]byte, 256<<10)
	_, _ = rand.Read(payload)
	file := filepath.Join(work, "payload.bin")
	if err := os.WriteFile(file, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(payload)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	store := filepath.Join(work, "store")
	pub := sealStore(t, store, func(st *airgap.Store) error {
		return st.AddFile(context.Background(), airgap.File{Name: "payload", Tag: "1", Path: file})
	})
	out := filepath.Join(work, "flip.iso")
	if _, err := iso.Master(context.Background(), iso.Config{Base: standInBase(t), Store: store, Output: out, SourceDateEpoch: time.Unix(sourceDate, 0)}); err != nil {
		t.Fatal(err)
	}

	// Find the blob's first block in the ISO and flip a byte in the middle of its data.
	isoPath := "/" + appliance.MediumStoreDir + blobPath("/", digest)
	rep, err := exec.Command("xorriso", "-indev", out, "-find", isoPath, "-exec", "report_lba", "--").CombinedOutput()
	if err != nil {
		t.Fatalf("xorriso report_lba: %v\n%s", err, rep)
	}
	m := regexp.MustCompile(`File data lba:\s+\d+\s*,\s*(\d+)\s*,`).FindSubmatch(rep)
	if m == nil {
		t.Fatalf("no LBA for %s in xorriso's report:\n%s", isoPath, rep)
	}
	lba, _ := strconv.ParseInt(string(m[1]), 10, 64)
	off := lba*2048 + int64(len(payload)/2)
	img, err := os.OpenFile(out, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := img.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	if b[0] != payload[len(payload)/2] {
		t.Fatalf("byte at LBA %d + %d is %#x, not the payload's %#x: the LBA is wrong", lba, len(payload)/2, b[0], payload[len(payload)/2])
	}
	b[0] ^= 0xff
	if _, err := img.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}

	storeOnISO := readBack(t, out, "/"+appliance.MediumStoreDir)
	pubPEM := writePub(t, work, pub)
	cairn := filepath.Join(work, "cairn")
	if b, err := exec.Command("go", "build", "-o", cairn, "github.com/cairn-appliance/cairn/cmd/cairn").CombinedOutput(); err != nil {
		t.Fatalf("building cairn: %v\n%s", err, b)
	}
	verify := exec.Command(cairn, "bundle", "verify", storeOnISO, "--key", pubPEM)
	vout, err := verify.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("cairn bundle verify on the damaged ISO: %v, want exit status 1\n%s", err, vout)
	}
	if !strings.Contains(string(vout), hex.EncodeToString(sum[:])) {
		t.Errorf("cairn bundle verify did not name the damaged blob %s:\n%s", digest, vout)
	}
	t.Logf("cairn bundle verify on the damaged ISO says:\n%s", vout)
}

func writePub(t *testing.T, dir string, pub ed25519.PublicKey) string {
	t.Helper()
	p := filepath.Join(dir, "key.pub")
	pemBytes, err := pubPEMBytes(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func sha256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
