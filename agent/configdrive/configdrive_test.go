package configdrive

import (
	"bytes"
	"encoding/json"
	"github.com/cairn-appliance/cairn/agent/api"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var modTime = time.Date(2026, 12, 1, 10, 30, 42, 0, time.UTC)

// sample is a configdrive's files plus names and sizes that exercise the layout: empty, more
// than one cluster, more than 64 KiB, an exact 8.3 name, long names.
func sample() Files {
	big := make([]byte, 200<<10+17)
	for i := range big {
		big[i] = byte(i*7 + i>>9)
	}
	mid := bytes.Repeat([]byte("0123456789abcdef"), 190) // 3040 bytes: several 512-byte clusters
	rec, _ := json.Marshal(api.Record{Site: "lab", Host: "web-1", Provision: 3, Image: "sha256:" + strings.Repeat("ab", 32), MAC: "52:54:00:12:34:56"})
	return Files{
		UserData:                               []byte("#cloud-config\nhostname: web-1\n"),
		MetaData:                               []byte("instance-id: web-1-3\nlocal-hostname: web-1\n"),
		NetworkConfig:                          []byte("version: 2\nethernets:\n  eth0:\n    dhcp4: true\n"),
		VendorData:                             {},
		api.RecordFile:                         rec,
		"README.TXT":                           []byte("upper case 8.3 name\n"),
		"mid.bin":                              mid,
		"big-file-with-a-rather-long-name.bin": big,
	}
}

// image writes files into a new file of exactly size bytes and returns its path.
func image(t *testing.T, size int64, label string, files Files) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cidata.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Write(f, 0, size, label, files, modTime); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func equalFiles(t *testing.T, got, want Files) {
	t.Helper()
	if g, w := slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)); !slices.Equal(g, w) {
		t.Fatalf("files = %q, want %q", g, w)
	}
	for name, w := range want {
		if !bytes.Equal(got[name], w) {
			t.Errorf("file %q: %d bytes read back, want the %d written (or they differ)", name, len(got[name]), len(w))
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		size  int64
		files Files
		fat   string
		bps   int64
	}{
		{"16MiB", 16 << 20, sample(), "FAT16", 512},
		{"1MiB", 1 << 20, sample(), "FAT12", 512},
		{"64MiB", 64 << 20, sample(), "FAT16", 512},
		{"min", MinSize, Files{UserData: []byte("#cloud-config\n"), MetaData: []byte("instance-id: x\n")}, "FAT12", 512},
		{"empty", 1 << 20, Files{}, "FAT12", 512},
		{"16MiB 4K sectors", 16 << 20, sample(), "FAT12", 4096},
		{"64MiB 4K sectors", 64 << 20, sample(), "FAT16", 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.size > 16<<20 && testing.Short() {
				t.Skip("large volume: not with -short")
			}
			// Written into the middle of a bigger file, as on a disk.
			const off = 1 << 20
			buf := &memWriter{}
			if err := WriteSectors(buf, off, tc.size, tc.bps, Label, tc.files, modTime); err != nil {
				t.Fatalf("Write: %v", err)
			}
			if int64(len(buf.b)) != off+tc.size {
				t.Fatalf("Write wrote up to byte %d, want the whole region up to %d", len(buf.b), off+tc.size)
			}
			if got := string(buf.b[off+54 : off+59]); got != tc.fat {
				t.Errorf("file system type %q, want %q", got, tc.fat)
			}
			label, files, err := Read(bytes.NewReader(buf.b), off, tc.size)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if label != Label {
				t.Errorf("label = %q, want %q", label, Label)
			}
			equalFiles(t, files, tc.files)

			if testing.Short() {
				return
			}
			p := filepath.Join(t.TempDir(), "cidata.img")
			if err := os.WriteFile(p, buf.b[off:], 0o644); err != nil {
				t.Fatal(err)
			}
			checkTools(t, p, tc.files)
		})
	}
}

// checkTools has blkid, fsck.vfat and mtools look at the volume in p, when they are there.
func checkTools(t *testing.T, p string, files Files) {
	t.Helper()
	if _, err := exec.LookPath("blkid"); err == nil {
		out, err := exec.Command("blkid", "-p", "-o", "export", p).CombinedOutput()
		if err != nil {
			t.Errorf("blkid -p -o export %s: %v\n%s", p, err, out)
		}
		s := string(out)
		if !strings.Contains(s, "TYPE=vfat\n") || !(strings.Contains(s, "LABEL=cidata\n") || strings.Contains(s, "LABEL_FATBOOT=cidata\n")) {
			t.Errorf("blkid says:\n%s\nwant TYPE=vfat and LABEL=cidata", s)
		}
	} else {
		t.Log("blkid is not installed (Debian package util-linux): not checked")
	}
	if fsck, err := exec.LookPath("fsck.vfat"); err == nil {
		out, err := exec.Command(fsck, "-n", "-v", p).CombinedOutput()
		if err != nil {
			t.Errorf("fsck.vfat -n %s: %v\n%s", p, err, out)
		}
	} else {
		t.Log("fsck.vfat is not installed (Debian package dosfstools): not checked")
	}
	if _, err := exec.LookPath("mtype"); err == nil {
		out, err := exec.Command("mdir", "-i", p, "-b", "::").CombinedOutput()
		if err != nil {
			t.Errorf("mdir -i %s ::: %v\n%s", p, err, out)
		}
		for name, want := range files {
			got, err := exec.Command("mtype", "-i", p, "::"+name).Output()
			if err != nil {
				t.Errorf("mtype -i %s ::%s: %v", p, name, err)
				continue
			}
			if !bytes.Equal(got, want) {
				t.Errorf("mtype ::%s gave %d bytes, want the %d written (or they differ)", name, len(got), len(want))
			}
		}
		if !strings.Contains(string(out), "::/user-data") && files[UserData] != nil {
			t.Errorf("mdir -b lists no user-data:\n%s", out)
		}
	} else {
		t.Log("mtools is not installed (Debian package mtools): not checked")
	}
}

type memWriter struct{ b []byte }

func (m *memWriter) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	return copy(m.b[off:], p), nil
}

func TestDeterministic(t *testing.T) {
	write := func(files Files, mt time.Time) []byte {
		// Old bytes in the region must not show through.
		m := &memWriter{b: bytes.Repeat([]byte{0xA5}, 4<<20)}
		if err := Write(m, 0, 4<<20, Label, files, mt); err != nil {
			t.Fatal(err)
		}
		return m.b
	}
	a, b := write(sample(), modTime), write(sample(), modTime)
	if !bytes.Equal(a, b) {
		t.Fatal("two writes of the same files and time differ")
	}
	if bytes.Contains(a, []byte{0xA5, 0xA5, 0xA5, 0xA5, 0xA5, 0xA5, 0xA5, 0xA5}) {
		t.Error("old bytes of the region survive the write: free space is not zeroed")
	}
	if c := write(sample(), modTime.Add(time.Hour)); bytes.Equal(a, c) {
		t.Error("a different modification time gives the same bytes")
	}
	f := sample()
	f[UserData] = []byte("#cloud-config\nhostname: web-2\n")
	if c := write(f, modTime); bytes.Equal(a, c) {
		t.Error("different content gives the same bytes")
	}
}

// TestReadOthers reads volumes mkfs.vfat and mcopy made: FAT12, FAT16 and FAT32.
func TestReadOthers(t *testing.T) {
	for _, tool := range []string{"mkfs.vfat", "mcopy"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (Debian packages dosfstools and mtools)", tool)
		}
	}
	if testing.Short() {
		t.Skip("runs mkfs.vfat: not with -short")
	}
	files := sample()
	src := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(src, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		fat  string
		kib  int
		args []string
	}{
		{"12", 1024, nil},
		{"16", 16384, nil},
		{"32", 40960, []string{"-F", "32"}},
	} {
		t.Run("FAT"+tc.fat, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "v.img")
			args := append([]string{"-n", "CIDATA", "-C"}, tc.args...)
			args = append(args, p, strconv.Itoa(tc.kib))
			if out, err := exec.Command("mkfs.vfat", args...).CombinedOutput(); err != nil {
				t.Fatalf("mkfs.vfat %q: %v\n%s", args, err, out)
			}
			if err := os.Mkdir(filepath.Join(filepath.Dir(p), "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := []string{"-i", p}
			for name := range files {
				cmd = append(cmd, filepath.Join(src, name))
			}
			cmd = append(cmd, filepath.Join(filepath.Dir(p), "sub"), "::")
			if out, err := exec.Command("mcopy", append([]string{"-s"}, cmd...)...).CombinedOutput(); err != nil {
				t.Fatalf("mcopy: %v\n%s", err, out)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			st, _ := f.Stat()
			label, got, err := Read(f, 0, st.Size())
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if label != "CIDATA" {
				t.Errorf("label = %q, want CIDATA", label)
			}
			equalFiles(t, got, files) // the subdirectory is skipped
		})
	}
}

func TestWriteRefuses(t *testing.T) {
	tooMany := Files{}
	for i := range 200 {
		tooMany["a-long-name-number-"+strconv.Itoa(i)] = nil
	}
	for _, tc := range []struct {
		name  string
		size  int64
		label string
		files Files
		want  string
	}{
		{"small", 32 << 10, Label, nil, "too small"},
		{"odd size", 1<<20 + 100, Label, nil, "not a whole number"},
		{"odd size 4K", 1<<20 + 512, Label, nil, "not a whole number of 4096-byte sectors"},
		{"huge", 4 << 30, Label, nil, "larger than FAT16 holds"},
		{"long label", 1 << 20, "cidata-config", nil, "longer than 11"},
		{"bad label", 1 << 20, "ci.data", nil, "does not allow"},
		{"case twins", 1 << 20, Label, Files{"user-data": nil, "USER-DATA": nil}, "differ only in case"},
		{"slash", 1 << 20, Label, Files{"a/b": nil}, "does not allow"},
		{"dot", 1 << 20, Label, Files{"..": nil}, "not a file name"},
		{"full", 1 << 20, Label, Files{"big": make([]byte, 2<<20)}, "make the configdrive larger"},
		{"too many", 1 << 20, Label, tooMany, "root directory entries"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bps := int64(512)
			if strings.HasSuffix(tc.name, "4K") {
				bps = 4096
			}
			err := WriteSectors(&memWriter{}, 0, tc.size, bps, tc.label, tc.files, modTime)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Write = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

func TestReadRefuses(t *testing.T) {
	if _, _, err := Read(bytes.NewReader(make([]byte, 1<<20)), 0, 1<<20); err == nil || !strings.Contains(err.Error(), "no FAT boot sector") {
		t.Errorf("Read(zeros) = %v, want no FAT boot sector", err)
	}
	m := &memWriter{}
	if err := Write(m, 0, 1<<20, Label, sample(), modTime); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Read(bytes.NewReader(m.b), 0, 512<<10); err == nil || !strings.Contains(err.Error(), "more than the") {
		t.Errorf("Read of a short region = %v, want an error about the volume's size", err)
	}
	// A FAT whose chain loops.
	b := bytes.Clone(m.b)
	v, err := open(bytes.NewReader(b), 0, int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	for c := uint32(2); c < v.clusters+2; c++ {
		setFAT(b[512:], v.bits == 12, c, c) // every cluster points at itself
	}
	if _, _, err := Read(bytes.NewReader(b), 0, int64(len(b))); err == nil || !strings.Contains(err.Error(), "loops") {
		t.Errorf("Read of a looping FAT = %v, want an error saying it loops", err)
	}
}

func TestShortNames(t *testing.T) {
	_, files, err := func() (string, Files, error) {
		m := &memWriter{}
		f := Files{"network-config": nil, "network-config.old": nil, "network-configs": nil, "ABC.TXT": nil, "abc.txt.bak": nil, "mid.bin": nil, ".hidden": nil, "ünï.txt": nil}
		if err := Write(m, 0, 1<<20, Label, f, modTime); err != nil {
			return "", nil, err
		}
		if _, got, err := Read(bytes.NewReader(m.b), 0, int64(len(m.b))); err != nil {
			return "", nil, err
		} else if g, w := slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(f)); !slices.Equal(g, w) {
			t.Errorf("long names read back = %q, want %q", g, w)
		}
		// What the short names are, as a reader without long names sees them.
		v, err := open(bytes.NewReader(m.b), 0, int64(len(m.b)))
		if err != nil {
			return "", nil, err
		}
		dir := make([]byte, rootEntries*dirEntry)
		copy(dir, m.b[v.rootStart*512:])
		shorts := Files{}
		for i := 0; i < len(dir) && dir[i] != 0; i += dirEntry {
			if dir[i+11] != attrLFN && dir[i+11]&attrVolume == 0 {
				var s [11]byte
				copy(s[:], dir[i:i+11])
				shorts[shortString(s, 0)] = nil
			}
		}
		return "", shorts, nil
	}()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ABC.TXT", "ABCTXT~1.BAK", "HIDDEN~1", "MID.BIN", "NETWOR~1", "NETWOR~1.OLD", "NETWOR~2", "_N_~1.TXT"}
	if got := slices.Sorted(maps.Keys(files)); !slices.Equal(got, want) {
		t.Errorf("short names = %q, want %q", got, want)
	}
}

// TestMount mounts the volume with Linux's vfat driver: needs root and loop devices.
func TestMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	if testing.Short() {
		t.Skip("mounts a loop device: not with -short")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("losetup is not installed (Debian package mount)")
	}
	if fs, err := os.ReadFile("/proc/filesystems"); err != nil || !strings.Contains(string(fs), "\tvfat\n") {
		if err := exec.Command("modprobe", "vfat").Run(); err != nil {
			t.Skip("the kernel has no vfat file system (not in /proc/filesystems, modprobe vfat failed)")
		}
	}
	files := sample()
	p := image(t, 16<<20, Label, files)
	out, err := exec.Command("losetup", "-f", "--show", "-r", p).Output()
	if err != nil {
		t.Skipf("no loop device: losetup -f --show: %v", err)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", loop).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v\n%s", loop, err, out)
		}
	})
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "vfat", "-o", "ro", loop, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount -t vfat %s: %v\n%s", loop, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	got := Files{}
	ents, err := os.ReadDir(mnt)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(mnt, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		got[e.Name()] = b
	}
	equalFiles(t, got, files)
	if out, err := exec.Command("blkid", "-o", "value", "-s", "LABEL", loop).Output(); err == nil && strings.TrimSpace(string(out)) != Label {
		t.Errorf("blkid LABEL of %s = %q, want %q", loop, out, Label)
	}
	st, err := os.Stat(filepath.Join(mnt, UserData))
	if err != nil {
		t.Fatal(err)
	}
	// vfat shows FAT's local time as UTC unless told otherwise: the written time, to 2 s.
	if d := st.ModTime().Sub(modTime); d < -2*time.Second || d > 2*time.Second {
		t.Errorf("user-data's modification time = %v, want %v", st.ModTime().UTC(), modTime)
	}
}

func FuzzRead(f *testing.F) {
	m := &memWriter{}
	if err := Write(m, 0, MinSize, Label, Files{UserData: []byte("#cloud-config\n"), "a-long-name.txt": bytes.Repeat([]byte("x"), 1500)}, modTime); err != nil {
		f.Fatal(err)
	}
	f.Add(m.b)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = Read(bytes.NewReader(b), 0, int64(len(b)))
	})
}
