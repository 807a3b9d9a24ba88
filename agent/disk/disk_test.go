package disk

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-appliance/cairn/agent/api"
)

var (
	typeESP  = parseGUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
	testDisk = parseGUID("5C1E6A2B-7D3F-4E8A-9B0C-1D2E3F405162")
)

type tpart struct {
	typ         guid
	first, last int64 // LBAs; last -1: the last usable LBA
	name        string
}

// buildGPT makes an image file of size bytes with a protective MBR and a GPT for sectors of
// ss bytes holding parts, its backup at its end: what an OS image holds.
func buildGPT(t testing.TB, path string, size, ss int64, parts []tpart) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	d, err := open(path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	g := &gpt{sector: ss, diskGUID: testDisk, numEntries: 128, entrySize: 128, entriesLBA: 2}
	g.entries = make([]byte, 128*128)
	g.firstUsable = 2 + g.entrySectors()
	g.lastUsable = uint64(size/ss) - 1 - g.entrySectors() - 1
	for i, p := range parts {
		last := uint64(p.last)
		if p.last < 0 {
			last = g.lastUsable
		}
		g.setEntry(i, gptEntry{typ: p.typ, id: partitionGUID(guid{0x0A}, i+1), first: uint64(p.first), last: last, name: p.name})
	}
	if err := g.write(d); err != nil {
		t.Fatal(err)
	}
	m := mbr(make([]byte, 512))
	m[510], m[511] = 0x55, 0xAA
	m.setEntry(0, mbrEntry{typ: mbrTypeProtective, start: 1, count: uint32(min(size/ss-1, 0xFFFFFFFF))})
	if err := d.writeAt(m, 0); err != nil {
		t.Fatal(err)
	}
}

// osImage is a 64 MiB image as an OS image is: an ESP, then a Linux root to the end.
func osImage(t *testing.T, ss int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "os.img")
	a := mib / ss
	buildGPT(t, p, 64*mib, ss, []tpart{
		{typeESP, a, 9*a - 1, "EFI"},
		{typeRootX86_64, 9 * a, -1, "root"},
	})
	return p
}

// onDisk copies img to the start of a new disk file of size bytes and returns the disk's
// path. Past the image, the disk holds old content (0xEE) in the first and the last 64 KiB
// of every MiB.
func onDisk(t *testing.T, img string, size int64) string {
	t.Helper()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	old := bytes.Repeat([]byte{0xEE}, 64<<10)
	for at := alignUp(int64(len(b)), mib); at < size; at += mib {
		f.WriteAt(old, at)
		f.WriteAt(old, at+mib-int64(len(old)))
	}
	zeros := make([]byte, mib)
	for at := 0; at < len(b); at += mib {
		c := b[at:min(at+mib, len(b))]
		if bytes.Equal(c, zeros[:len(c)]) {
			continue // a hole of the new file reads as zeros already
		}
		if _, err := f.WriteAt(c, int64(at)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkGPT reads the disk's GPT back, primary and backup, and checks they agree and lie
// where they should; it returns the table.
func checkGPT(t *testing.T, path string, ss int64) *gpt {
	t.Helper()
	d, err := open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if got := d.sectorSize(); got != ss {
		t.Fatalf("sector size of %s = %d, want %d", path, got, ss)
	}
	g, err := readGPT(d, ss)
	if err != nil {
		t.Fatalf("reading the primary GPT: %v", err)
	}
	last := uint64(d.size/ss) - 1
	if g.backupLBA != last {
		t.Errorf("primary header: backup at LBA %d, want the last LBA %d", g.backupLBA, last)
	}
	es := g.entrySectors()
	if g.lastUsable != last-es-1 {
		t.Errorf("last usable LBA %d, want %d", g.lastUsable, last-es-1)
	}
	h, err := d.readAt(ss, int64(last)*ss)
	if err != nil {
		t.Fatal(err)
	}
	if string(h[:8]) != gptSignature {
		t.Fatalf("no backup GPT header at the last LBA %d", last)
	}
	hb := bytes.Clone(h[:gptHeaderSize])
	clear(hb[16:20])
	if crc32.ChecksumIEEE(hb) != binary.LittleEndian.Uint32(h[16:]) {
		t.Error("backup header CRC32 wrong")
	}
	le := binary.LittleEndian
	if my, alt, eLBA := le.Uint64(h[24:]), le.Uint64(h[32:]), le.Uint64(h[72:]); my != last || alt != 1 || eLBA != last-es {
		t.Errorf("backup header: at %d, other at %d, entries at %d; want %d, 1, %d", my, alt, eLBA, last, last-es)
	}
	if le.Uint64(h[48:]) != g.lastUsable || le.Uint64(h[40:]) != g.firstUsable {
		t.Error("backup header's usable LBAs differ from the primary's")
	}
	be, err := d.readAt(int64(g.numEntries)*int64(g.entrySize), int64(last-es)*ss)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(be, g.entries) || crc32.ChecksumIEEE(be) != le.Uint32(h[88:]) {
		t.Error("backup entries differ from the primary's or fail their CRC32")
	}
	m, _ := d.readAt(512, 0)
	if e := mbr(m).entry(0); e.typ != mbrTypeProtective || uint64(e.count) != min(last, 0xFFFFFFFF) {
		t.Errorf("protective MBR entry: type %#x, %d sectors; want 0xee over %d", e.typ, e.count, min(last, 0xFFFFFFFF))
	}
	return g
}

// sfdiskCheck has sfdisk verify the table and returns its JSON view, when sfdisk is there.
func sfdiskCheck(t *testing.T, path string) *sfTable {
	t.Helper()
	if _, err := exec.LookPath("sfdisk"); err != nil {
		t.Log("sfdisk is not installed (Debian package fdisk): not checked")
		return nil
	}
	out, err := exec.Command("sfdisk", "--verify", path).CombinedOutput()
	if err != nil {
		t.Errorf("sfdisk --verify %s: %v\n%s", path, err, out)
	}
	said := strings.ToLower(strings.Replace(string(out), "No errors detected.", "", 1))
	for _, bad := range []string{"mismatch", "not on the end", "error", "corrupt", "overlap", "invalid"} {
		if strings.Contains(said, bad) {
			t.Errorf("sfdisk --verify %s says:\n%s", path, out)
			break
		}
	}
	if sg, err := exec.LookPath("sgdisk"); err == nil {
		if out, err := exec.Command(sg, "-v", path).CombinedOutput(); err != nil || !strings.Contains(string(out), "No problems found") {
			t.Errorf("sgdisk -v %s: %v\n%s", path, err, out)
		}
	}
	js, err := exec.Command("sfdisk", "--json", path).Output()
	if err != nil {
		t.Fatalf("sfdisk --json %s: %v", path, err)
	}
	var v struct {
		Table sfTable `json:"partitiontable"`
	}
	if err := json.Unmarshal(js, &v); err != nil {
		t.Fatalf("sfdisk --json: %v\n%s", err, js)
	}
	return &v.Table
}

type sfTable struct {
	Label      string `json:"label"`
	ID         string `json:"id"`
	LastLBA    int64  `json:"lastlba"`
	SectorSize int64  `json:"sectorsize"`
	Partitions []struct {
		Start int64  `json:"start"`
		Size  int64  `json:"size"`
		Type  string `json:"type"`
		UUID  string `json:"uuid"`
		Name  string `json:"name"`
	} `json:"partitions"`
}

func TestFinishGrows(t *testing.T) {
	for _, ss := range []int64{512, 4096} {
		t.Run(fmt.Sprint(ss), func(t *testing.T) {
			dev := onDisk(t, osImage(t, ss), 256*mib)
			lay, err := Finish(dev, FinishOptions{})
			if err != nil {
				t.Fatalf("Finish: %v", err)
			}
			g := checkGPT(t, dev, ss)
			last := 256*mib/ss - 1
			cdStart := alignDown((last-int64(g.entrySectors()))*ss-16*mib, mib)
			want := Layout{
				Table:       "gpt",
				Grown:       &Part{Index: 2, Name: "root", Start: 9 * mib, Size: cdStart - 9*mib},
				ConfigDrive: Part{Index: 3, Name: "cidata", Start: cdStart, Size: 16 * mib},
				DiskSize:    256 * mib,
				SectorSize:  ss,
			}
			if got, w := fmt.Sprintf("%+v %+v", lay, *lay.Grown), fmt.Sprintf("%+v %+v", want, *want.Grown); got != w {
				t.Errorf("Finish = %s\nwant     %s", got, w)
			}
			if cdStart != 239*mib && ss == 512 {
				t.Errorf("configdrive at %d, want at 239 MiB", cdStart)
			}
			root, cd := g.entry(1), g.entry(2)
			if int64(root.last) != cdStart/ss-1 || root.typ != typeRootX86_64 {
				t.Errorf("root spans LBAs %d-%d, want up to %d", root.first, root.last, cdStart/ss-1)
			}
			if cd.typ != typeBasicData || cd.name != "cidata" || int64(cd.first)*ss != cdStart || int64(cd.last-cd.first+1)*ss != 16*mib {
				t.Errorf("configdrive entry %+v", cd)
			}
			if cd.id != partitionGUID(testDisk, 3) {
				t.Errorf("configdrive GUID %s, want %s (from the disk GUID and index)", cd.id, partitionGUID(testDisk, 3))
			}
			checkZeroed(t, dev, lay.ConfigDrive)
			// The image's old backup header, at 64 MiB - 1 sector, is gone.
			if b := readBytes(t, dev, 64*mib-ss, 8); string(b) == gptSignature {
				t.Error("the image's backup GPT header is still at the end of the image")
			}
			if ss == 512 {
				if sf := sfdiskCheck(t, dev); sf != nil {
					if sf.LastLBA != last-33 || len(sf.Partitions) != 3 || sf.Partitions[2].Name != "cidata" || sf.Partitions[2].Size*512 != 16*mib || sf.Partitions[1].Start+sf.Partitions[1].Size != sf.Partitions[2].Start {
						t.Errorf("sfdisk --json: %+v", sf)
					}
				}
			}
		})
	}
}

func readBytes(t *testing.T, path string, off, n int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// checkZeroed checks the first and the last MiB of p hold no old content (0xEE).
func checkZeroed(t *testing.T, dev string, p Part) {
	t.Helper()
	for _, at := range []int64{p.Start, p.Start + p.Size - min(p.Size, mib)} {
		if b := readBytes(t, dev, at, min(p.Size, mib)); bytes.IndexByte(b, 0xEE) >= 0 {
			t.Errorf("partition %d %q: old content left at %d..%d", p.Index, p.Name, at, at+mib)
		}
	}
}

func TestFinishExtras(t *testing.T) {
	img := osImage(t, 512)
	extra := []api.Partition{
		{Label: "data", SizeBytes: 32 * mib, Filesystem: "ext4", Mount: "/data"},
		{Label: "swap", SizeBytes: 16*mib + 1000, Filesystem: "swap"},
		{Label: "scratch", Filesystem: "xfs"},
	}
	dev := onDisk(t, img, 256*mib)
	lay, err := Finish(dev, FinishOptions{Extra: extra, ConfigDriveSize: 8 * mib})
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if lay.Grown != nil {
		t.Errorf("Finish grew %v, want the root left alone with extra partitions", *lay.Grown)
	}
	cd := Part{Index: 6, Name: "cidata", Start: 247 * mib, Size: 8 * mib}
	want := []Part{
		{3, "data", 64 * mib, 32 * mib},
		{4, "swap", 96 * mib, 16*mib + 1024},
		{5, "scratch", 113 * mib, 247*mib - 113*mib},
	}
	if got, w := fmt.Sprintf("%+v %+v", lay.Extra, lay.ConfigDrive), fmt.Sprintf("%+v %+v", want, cd); got != w {
		t.Errorf("Finish: extras and configdrive\n%s\nwant\n%s", got, w)
	}
	g := checkGPT(t, dev, 512)
	if root := g.entry(1); int64(root.last+1)*512 != 64*mib-33*512 {
		t.Errorf("root ends at LBA %d, moved from the image's", root.last)
	}
	for i, typ := range []guid{typeLinuxFS, typeLinuxSwap, typeLinuxFS, typeBasicData} {
		if e := g.entry(i + 2); e.typ != typ || e.name != []string{"data", "swap", "scratch", "cidata"}[i] {
			t.Errorf("entry %d: type %s name %q", i+3, e.typ, e.name)
		}
	}
	for _, p := range append(lay.Extra, lay.ConfigDrive) {
		checkZeroed(t, dev, p)
	}
	if sf := sfdiskCheck(t, dev); sf != nil && len(sf.Partitions) != 6 {
		t.Errorf("sfdisk sees %d partitions, want 6", len(sf.Partitions))
	}

	// The same image on the same disk gives the same bytes.
	dev2 := onDisk(t, img, 256*mib)
	if _, err := Finish(dev2, FinishOptions{Extra: extra, ConfigDriveSize: 8 * mib}); err != nil {
		t.Fatal(err)
	}
	if fileSum(t, dev) != fileSum(t, dev2) {
		t.Error("two Finish runs on the same image and disk give different bytes")
	}
}

// TestFinishSfdiskImage finishes an image another tool partitioned.
func TestFinishSfdiskImage(t *testing.T) {
	if _, err := exec.LookPath("sfdisk"); err != nil {
		t.Skip("sfdisk is not installed (Debian package fdisk)")
	}
	img := filepath.Join(t.TempDir(), "os.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64*mib); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sfdisk", "-q", img)
	cmd.Stdin = strings.NewReader("label: gpt\nunit: sectors\nstart=2048, size=16384, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"EFI\"\nstart=18432, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"linux\"\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	before := sfdiskCheck(t, img)
	dev := onDisk(t, img, 200*mib)
	lay, err := Finish(dev, FinishOptions{})
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	checkGPT(t, dev, 512)
	after := sfdiskCheck(t, dev)
	if after.ID != before.ID || after.Partitions[0] != before.Partitions[0] || after.Partitions[1].UUID != before.Partitions[1].UUID {
		t.Errorf("the image's disk GUID or partitions changed:\n%+v\n%+v", before, after)
	}
	if lay.Grown == nil || after.Partitions[1].Start+after.Partitions[1].Size != 183*mib/512 || after.Partitions[2].Start != 183*mib/512 || after.Partitions[2].Name != "cidata" {
		t.Errorf("Finish = %+v; sfdisk sees %+v", lay, after)
	}
	if !strings.EqualFold(after.Partitions[2].Type, typeBasicData.String()) {
		t.Errorf("configdrive type %s, want %s", after.Partitions[2].Type, typeBasicData)
	}
}

func TestFinishNoGrow(t *testing.T) {
	// The image's last partition is swap: it keeps its size.
	p := filepath.Join(t.TempDir(), "os.img")
	buildGPT(t, p, 64*mib, 512, []tpart{{typeRootX86_64, 2048, 40*2048 - 1, "root"}, {typeLinuxSwap, 40 * 2048, -1, "swap"}})
	dev := onDisk(t, p, 128*mib)
	lay, err := Finish(dev, FinishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if lay.Grown != nil || lay.ConfigDrive.Start != 111*mib {
		t.Errorf("Finish = %+v, want nothing grown, the configdrive at 111 MiB", lay)
	}
	checkGPT(t, dev, 512)
}

func TestFinishMBR(t *testing.T) {
	mk := func(t *testing.T, used int) string {
		p := filepath.Join(t.TempDir(), "os.img")
		m := mbr(make([]byte, 32*mib))
		m[510], m[511] = 0x55, 0xAA
		m[446] = 0x80
		for i := range used {
			m.setEntry(i, mbrEntry{typ: mbrTypeLinux, start: uint32(2048 * (i + 1)), count: 2048})
		}
		if err := os.WriteFile(p, m, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	dev := onDisk(t, mk(t, 1), 100*mib)
	lay, err := Finish(dev, FinishOptions{})
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	want := Layout{Table: "mbr", ConfigDrive: Part{Index: 2, Start: 84 * mib, Size: 16 * mib}, DiskSize: 100 * mib, SectorSize: 512}
	if fmt.Sprint(lay) != fmt.Sprint(want) {
		t.Errorf("Finish = %+v, want %+v", lay, want)
	}
	checkZeroed(t, dev, lay.ConfigDrive)
	if sf := sfdiskCheck(t, dev); sf != nil && (sf.Label != "dos" || len(sf.Partitions) != 2 || sf.Partitions[1].Start != 84*2048 || sf.Partitions[1].Type != "e") {
		t.Errorf("sfdisk sees %+v", sf)
	}
	if _, err := Finish(onDisk(t, mk(t, 1), 100*mib), FinishOptions{Extra: []api.Partition{{Label: "data"}}}); err == nil || !strings.Contains(err.Error(), "need a GPT image") {
		t.Errorf("Finish of an MBR image with extras = %v, want an error saying they need GPT", err)
	}
	if _, err := Finish(onDisk(t, mk(t, 4), 100*mib), FinishOptions{}); err == nil || !strings.Contains(err.Error(), "all four primary partitions") {
		t.Errorf("Finish of a full MBR = %v, want an error saying there is no slot", err)
	}
}

func TestFinishRefuses(t *testing.T) {
	img := osImage(t, 512)
	corrupt := func(off int64) func(t *testing.T, dev string) {
		return func(t *testing.T, dev string) {
			f, err := os.OpenFile(dev, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			b := make([]byte, 1)
			f.ReadAt(b, off)
			b[0] ^= 0x01
			f.WriteAt(b, off)
		}
	}
	for _, tc := range []struct {
		name  string
		size  int64
		prep  func(t *testing.T, dev string)
		opts  FinishOptions
		want  string
		image string
	}{
		{name: "header CRC", size: 96 * mib, prep: corrupt(512 + 40), want: "GPT header at LBA 1 has CRC32"},
		{name: "entries CRC", size: 96 * mib, prep: corrupt(1024 + 130), want: "GPT entries at LBA 2 have CRC32"},
		{name: "no configdrive room", size: 72 * mib, want: "too small for the image's partitions (up to byte 67091968) and a configdrive of 16 MiB"},
		{name: "no room for extras", size: 128 * mib, opts: FinishOptions{Extra: []api.Partition{{Label: "data", SizeBytes: 64 * mib}}}, want: "it needs at least 145 MiB"},
		{name: "image larger", size: 48 * mib, want: "the image is larger than the disk"},
		{name: "rest not last", size: 96 * mib, opts: FinishOptions{Extra: []api.Partition{{Label: "a"}, {Label: "b", SizeBytes: mib}}}, want: "only the last partition may take the rest"},
		{name: "long name", size: 96 * mib, opts: FinishOptions{Extra: []api.Partition{{Label: strings.Repeat("x", 37)}}}, want: "more than the 36"},
		{name: "odd configdrive", size: 96 * mib, opts: FinishOptions{ConfigDriveSize: 1000}, want: "not a whole number"},
		{name: "no table", size: 96 * mib, prep: func(t *testing.T, dev string) { os.WriteFile(dev, make([]byte, 96*mib), 0o644) }, want: "no partition table"},
		{name: "twice", size: 96 * mib, prep: func(t *testing.T, dev string) {
			if _, err := Finish(dev, FinishOptions{}); err != nil {
				t.Fatal(err)
			}
		}, want: "already has a configdrive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := img
			if tc.size < 64*mib {
				src = filepath.Join(t.TempDir(), "cut.img")
				b, _ := os.ReadFile(img)
				os.WriteFile(src, b[:tc.size], 0o644)
			}
			dev := onDisk(t, src, tc.size)
			if tc.prep != nil {
				tc.prep(t, dev)
			}
			before := fileSum(t, dev)
			_, err := Finish(dev, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Finish = %v, want an error saying %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), dev) {
				t.Errorf("the error does not name the device: %v", err)
			}
			if fileSum(t, dev) != before {
				t.Error("a refused Finish changed the disk")
			}
		})
	}
}

// fileSum is a checksum of the file at p, to tell whether it changed.
func fileSum(t *testing.T, p string) uint32 {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := crc32.NewIEEE()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return h.Sum32()
}

func TestWipe(t *testing.T) {
	p := filepath.Join(t.TempDir(), "disk.img")
	buildGPT(t, p, 64*mib, 512, []tpart{{typeLinuxFS, 2048, -1, "old"}})
	// Old content in the middle stays: only the ends are wiped.
	f, _ := os.OpenFile(p, os.O_RDWR, 0)
	f.WriteAt(bytes.Repeat([]byte{0xEE}, mib), 20*mib)
	f.Close()
	if out, err := exec.Command("blkid", "-p", p).CombinedOutput(); err == nil && !strings.Contains(string(out), `PTTYPE="gpt"`) {
		t.Fatalf("blkid does not see the GPT to wipe: %s", out)
	}
	if err := Wipe(p); err != nil {
		t.Fatalf("Wipe: %v", err)
	}
	b, _ := os.ReadFile(p)
	if len(b) != 64*mib {
		t.Fatalf("Wipe changed the size to %d", len(b))
	}
	if !allZero(b[:mib]) || !allZero(b[63*mib:]) {
		t.Error("Wipe left bytes in the first or the last MiB")
	}
	if !bytes.Equal(b[20*mib:21*mib], bytes.Repeat([]byte{0xEE}, mib)) {
		t.Error("Wipe changed the middle of the disk")
	}
	if bytes.Contains(b, []byte(gptSignature)) {
		t.Error("a GPT header survives Wipe")
	}
	if _, err := exec.LookPath("blkid"); err == nil {
		// blkid exits 2 when it finds nothing.
		if out, err := exec.Command("blkid", "-p", p).CombinedOutput(); err == nil || strings.Contains(string(out), "PTTYPE") {
			t.Errorf("blkid -p still finds something: %v %s", err, out)
		}
	}
	if _, ok, err := ConfigDrivePart(p); ok || err != nil {
		t.Errorf("ConfigDrivePart of a wiped disk = %v, %v; want none", ok, err)
	}
	// A disk smaller than 2 MiB is wiped whole.
	small := filepath.Join(t.TempDir(), "small.img")
	os.WriteFile(small, bytes.Repeat([]byte{1}, 1536<<10+100), 0o644)
	if err := Wipe(small); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(small); !allZero(b) || len(b) != 1536<<10+100 {
		t.Error("Wipe of a 1.5 MiB file left bytes or changed its size")
	}
	if err := Wipe(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("Wipe of a missing file = %v, want an error naming it", err)
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{
		100:         "100 bytes",
		16 * mib:    "16 MiB (16777216 bytes)",
		1536 << 20:  "1.5 GiB (1610612736 bytes)",
		20000000000: "18.6 GiB (20000000000 bytes)",
		4 << 40:     "4 TiB (4398046511104 bytes)",
	} {
		if got := size(n); got != want {
			t.Errorf("size(%d) = %q, want %q", n, got, want)
		}
	}
}

// FuzzTable reads partition tables from arbitrary first sectors: errors, never panics.
func FuzzTable(f *testing.F) {
	img := filepath.Join(f.TempDir(), "seed.img")
	buildGPT(f, img, 4*mib, 512, []tpart{{typeRootX86_64, 2048, -1, "root"}})
	b, err := os.ReadFile(img)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b[:64<<10])
	m := mbr(make([]byte, 1024))
	m[510], m[511] = 0x55, 0xAA
	m.setEntry(0, mbrEntry{typ: mbrTypeLinux, start: 1, count: 1})
	f.Add([]byte(m))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 512 {
			return
		}
		p := filepath.Join(dir, "fuzz.img")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		d, err := open(p, false)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if parts, _, err := partitions(d, d.sectorSize(), mbr(b[:512])); err == nil {
			findConfigDrive(d, parts)
		}
	})
}
