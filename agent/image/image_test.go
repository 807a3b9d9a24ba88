package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/cairn-appliance/cairn/agent/api"
)

// The test image: 5 MiB and a bit, so that it spans two buffers and ends unaligned.
const imageSize = 5<<20 + 1000

// makeImage is size bytes of compressible data (words of random letters) in which zeroPct
// percent of each 10 MiB are zero, in runs of 1 MiB; the first MiB, the bootable head, is data.
func makeImage(size int, zeroPct int, seed uint64) []byte {
	rng := rand.New(rand.NewChaCha8([32]byte{byte(seed)}))
	words := make([][]byte, 512)
	for i := range words {
		w := make([]byte, 2+rng.IntN(10))
		for j := range w {
			w[j] = 'a' + byte(rng.IntN(26))
		}
		words[i] = append(w, ' ')
	}
	// A MiB of words, then copies of it that each differ in a few bytes: quick to make,
	// and every MiB is distinct.
	img := make([]byte, 0, max(size, 1<<20)+16)
	for len(img) < 1<<20 {
		img = append(img, words[rng.IntN(len(words))]...)
	}
	img = img[:1<<20]
	for seg := 1; len(img) < size; seg++ {
		img = append(img, img[:1<<20]...)
		for range 16 {
			img[seg<<20+rng.IntN(1<<20)] = byte(seg)
		}
	}
	img = img[:size]
	for seg := 0; seg*(1<<20) < size; seg++ {
		if k := seg % 10; k >= 1 && k <= zeroPct/10 {
			clear(img[seg<<20 : min((seg+1)<<20, size)])
		}
	}
	return img
}

// compress encodes data in format f.
func compress(f api.ImageFormat, data []byte) []byte {
	var b bytes.Buffer
	var w io.WriteCloser
	var err error
	switch f {
	case api.FormatRaw:
		return data
	case api.FormatRawZstd:
		w, err = zstd.NewWriter(&b)
	case api.FormatRawGzip:
		w = gzip.NewWriter(&b)
	case api.FormatRawXz:
		w, err = xz.NewWriter(&b)
	}
	if err == nil {
		_, err = w.Write(data)
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		panic(err)
	}
	return b.Bytes()
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return digestOf(s[:])
}

// server serves one blob, answering Range requests (bytes=N-) unless told not to. It cuts
// the connection once at each offset of cuts (hijacking it after that many bytes of the
// blob), and stalls once at stallAt.
type server struct {
	blob        []byte
	ignoreRange bool
	stallAt     int64
	stall       time.Duration

	mu     sync.Mutex
	cuts   []int64
	ranges []string
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.ranges = append(s.ranges, r.Header.Get("Range"))
	var start int64
	if rg, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes="); ok && !s.ignoreRange {
		start, _ = strconv.ParseInt(strings.TrimSuffix(rg, "-"), 10, 64)
	}
	cut := int64(-1)
	for i, c := range s.cuts {
		if c >= start && c > 0 {
			cut = c
			s.cuts = append(s.cuts[:i:i], s.cuts[i+1:]...)
			break
		}
	}
	stallAt := int64(-1)
	if s.stall > 0 && s.stallAt > start {
		stallAt = s.stallAt
		s.stall, s.stallAt = 0, 0
	}
	stall := s.stall
	s.mu.Unlock()

	body := s.blob[start:]
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Accept-Ranges", "bytes")
	if start > 0 {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(s.blob)-1, len(s.blob)))
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	switch {
	case cut >= 0:
		_, _ = w.Write(body[:cut-start])
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	case stallAt >= 0:
		_, _ = w.Write(body[:stallAt-start])
		w.(http.Flusher).Flush()
		select {
		case <-time.After(stall + 5*time.Second):
		case <-r.Context().Done():
		}
	default:
		_, _ = w.Write(body)
	}
}

func (s *server) rangesSeen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...)
}

func serve(t *testing.T, s *server) string {
	t.Helper()
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return ts.URL + "/blobs/image"
}

// fastOptions retry at once and log to the test.
func fastOptions(t *testing.T) Options {
	return Options{Backoff: time.Millisecond, Log: t.Logf, HoldHead: 1 << 20}
}

func fileDigest(t *testing.T, path string, n int64) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, n)); err != nil {
		t.Fatal(err)
	}
	return digestOf(h.Sum(nil))
}

func readAt(t *testing.T, path string, off, n int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) { // past a file's end reads as zeros
		t.Fatal(err)
	}
	return b
}

var formats = []api.ImageFormat{api.FormatRaw, api.FormatRawZstd, api.FormatRawGzip, api.FormatRawXz}

// blobs compresses the test image once per format.
var blobs = sync.OnceValue(func() map[api.ImageFormat][]byte {
	img := makeImage(imageSize, 30, 1)
	m := map[api.ImageFormat][]byte{}
	for _, f := range formats {
		m[f] = compress(f, img)
	}
	return m
})

func TestWriteFormats(t *testing.T) {
	img := blobs()[api.FormatRaw]
	for _, f := range formats {
		for _, declared := range []api.ImageFormat{f, ""} {
			t.Run(fmt.Sprintf("%s/declared=%q", f, declared), func(t *testing.T) {
				blob := blobs()[f]
				url := serve(t, &server{blob: blob})
				target := filepath.Join(t.TempDir(), "disk.img")
				var last Progress
				opts := fastOptions(t)
				opts.Progress = func(p Progress) { last = p }
				src := Source{URL: url, Name: "test-" + string(f), Format: declared, Size: int64(len(blob)),
					Digest: digest(blob), UncompressedDigest: digest(img), UncompressedSize: int64(len(img))}
				res, err := Write(context.Background(), src, target, opts)
				if err != nil {
					t.Fatalf("Write: %v", err)
				}
				if res.Written != int64(len(img)) || res.Digest != digest(img) {
					t.Errorf("Write = %d bytes %s, want %d bytes %s", res.Written, res.Digest, len(img), digest(img))
				}
				if got := fileDigest(t, target, 1<<40); got != digest(img) {
					t.Errorf("the target holds %s, want %s", got, digest(img))
				}
				if last.Written != int64(len(img)) || last.Total != int64(len(img)) {
					t.Errorf("last progress %+v, want Written = Total = %d", last, len(img))
				}
				if res.Zero < 2<<20 {
					t.Errorf("Write skipped %d zero bytes, want at least the image's 2 MiB runs of zeros", res.Zero)
				}
			})
		}
	}
}

// TestWriteLoopDevice writes every format onto a loop device filled with 0xAA first: the
// image's zero runs, not written, must read back as zeros (BLKZEROOUT).
func TestWriteLoopDevice(t *testing.T) {
	img := blobs()[api.FormatRaw]
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			dev := loopDevice(t, 16<<20, 0xAA)
			blob := blobs()[f]
			src := Source{URL: serve(t, &server{blob: blob}), Name: "test", UncompressedDigest: digest(img), UncompressedSize: int64(len(img))}
			res, err := Write(context.Background(), src, dev, fastOptions(t))
			if err != nil {
				t.Fatalf("Write: %v", err)
			}
			if got := fileDigest(t, dev, int64(len(img))); got != digest(img) {
				t.Errorf("the device's first %d bytes are %s, want %s", len(img), got, digest(img))
			}
			// Control: what lies beyond the image is still the fill, so the zeros above are
			// the writer's doing, not a fresh device's.
			if tail := readAt(t, dev, 15<<20, 4096); tail[0] != 0xAA {
				t.Errorf("the device past the image reads %#x, want the fill 0xaa", tail[0])
			}
			if res.Zero == 0 {
				t.Error("Write zeroed nothing on the device, want the image's zero runs")
			}
		})
	}
}

// loopDevice attaches a loop device over a file of size bytes of fill, detached at cleanup.
// It skips the test when not root.
func loopDevice(t *testing.T, size int, fill byte) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root; run the tests as root to write to a block device")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("losetup is not installed (util-linux)")
	}
	file := filepath.Join(t.TempDir(), "loop.img")
	if err := os.WriteFile(file, bytes.Repeat([]byte{fill}, size), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "-f", "--show", file).CombinedOutput()
	if err != nil {
		t.Skipf("losetup -f --show: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
	})
	return dev
}

// TestResume cuts the connection four times, once just as a resume starts; the writer
// resumes each with Range and the target is exact.
func TestResume(t *testing.T) {
	img := blobs()[api.FormatRaw]
	for _, f := range []api.ImageFormat{api.FormatRaw, api.FormatRawZstd} {
		t.Run(string(f), func(t *testing.T) {
			blob := blobs()[f]
			n := int64(len(blob))
			cuts := []int64{n / 5, n / 5, n / 2, n - 10} // the second n/5 cuts the resume at once
			s := &server{blob: blob, cuts: cuts}
			target := filepath.Join(t.TempDir(), "disk.img")
			src := Source{URL: serve(t, s), Name: "test", Size: n, Digest: digest(blob), UncompressedDigest: digest(img)}
			res, err := Write(context.Background(), src, target, fastOptions(t))
			if err != nil {
				t.Fatalf("Write: %v", err)
			}
			if got := fileDigest(t, target, 1<<40); got != digest(img) {
				t.Errorf("the target holds %s, want %s", got, digest(img))
			}
			ranges := s.rangesSeen()
			at := fmt.Sprintf("bytes=%d-", n/5)
			if res.Resumes != 4 || len(ranges) != 5 || ranges[0] != "" || ranges[1] != at || ranges[2] != at {
				t.Errorf("Write resumed %d times, requests' ranges %q; want 4 resumes, the first two at %s", res.Resumes, ranges, at)
			}
		})
	}
	// Control: the same cuts against a server that answers every try with the start of the
	// blob, cut again, fail; so the success above is the resumes'.
	t.Run("control", func(t *testing.T) {
		blob := blobs()[api.FormatRaw]
		n := int64(len(blob))
		s := &server{blob: blob, cuts: []int64{n / 2, n / 2, n / 2, n / 2}, ignoreRange: true}
		src := Source{URL: serve(t, s), Name: "test", Size: n, Digest: digest(blob), UncompressedDigest: digest(img)}
		_, err := Write(context.Background(), src, filepath.Join(t.TempDir(), "disk.img"), fastOptions(t))
		if err == nil {
			t.Fatal("Write succeeded with a server that cuts every connection and ignores Range")
		}
	})
}

// TestRangeIgnored: after data was written, a server that answers the resume with 200 ends
// the write with an error that says so; before anything was written, the writer starts over.
func TestRangeIgnored(t *testing.T) {
	img := blobs()[api.FormatRaw]
	blob := img
	n := int64(len(blob))
	for _, tc := range []struct {
		name string
		cut  int64
		ok   bool
	}{
		{"after writing", n - 1000, false},
		{"before writing (control)", 100, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &server{blob: blob, cuts: []int64{tc.cut}, ignoreRange: true}
			target := filepath.Join(t.TempDir(), "disk.img")
			src := Source{URL: serve(t, s), Name: "test", Size: n, Digest: digest(blob)}
			_, err := Write(context.Background(), src, target, fastOptions(t))
			if tc.ok {
				if err != nil {
					t.Fatalf("Write: %v", err)
				}
				if got := fileDigest(t, target, 1<<40); got != digest(img) {
					t.Errorf("the target holds %s, want %s", got, digest(img))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "Range") || !errors.Is(err, errStartOver) {
				t.Fatalf("Write = %v, want an error saying the server does not answer Range requests", err)
			}
			if head := readAt(t, target, 0, 4096); !allZero(head) {
				t.Error("the target's head is written, want it zero")
			}
		})
	}
}

// TestDigestMismatch flips one byte of the served blob: the write fails with a *DigestError
// and the held head of the target reads back as zeros.
func TestDigestMismatch(t *testing.T) {
	img := blobs()[api.FormatRaw]
	for _, tc := range []struct {
		name   string
		format api.ImageFormat
		flip   int // -1: none
		digest bool
	}{
		{"raw", api.FormatRaw, imageSize - 5, false},
		{"raw with blob digest", api.FormatRaw, 3 << 20, true},
		{"zstd", api.FormatRawZstd, -2, false}, // the middle of the blob
		{"raw control", api.FormatRaw, -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			blob := bytes.Clone(blobs()[tc.format])
			switch {
			case tc.flip == -2:
				blob[len(blob)/2] ^= 0x01
			case tc.flip >= 0:
				blob[tc.flip] ^= 0x01
			}
			dev := filepath.Join(t.TempDir(), "disk.img")
			if d := loopDeviceIfRoot(t, 16<<20); d != "" {
				dev = d
			}
			src := Source{URL: serve(t, &server{blob: blob}), Name: "debian-test", UncompressedDigest: digest(img)}
			if tc.digest {
				src.Digest = digest(blobs()[tc.format])
			}
			_, err := Write(context.Background(), src, dev, fastOptions(t))
			head := readAt(t, dev, 0, 1<<20)
			if tc.flip == -1 {
				if err != nil {
					t.Fatalf("Write: %v", err)
				}
				if !bytes.Equal(head, img[:1<<20]) {
					t.Error("the head is not the image's after a good write")
				}
				return
			}
			if err == nil {
				t.Fatal("Write succeeded with a flipped byte")
			}
			var de *DigestError
			if tc.format == api.FormatRaw {
				if !errors.As(err, &de) {
					t.Fatalf("Write = %v, want a *DigestError", err)
				}
				want := digest(img)
				if tc.digest {
					want = src.Digest
				}
				for _, s := range []string{"debian-test", de.Got, want} {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not name %s", err, s)
					}
				}
				if de.Want != want || de.Got == want || de.Held != 1<<20 {
					t.Errorf("DigestError = %+v, want Want %s and another Got, Held 1 MiB", de, want)
				}
			}
			t.Logf("Write: %v", err)
			if !allZero(head) {
				t.Error("the head of the target is written after a failed check, want zeros")
			}
		})
	}
}

func allZero(b []byte) bool { return bytes.Equal(b, make([]byte, len(b))) }

// loopDeviceIfRoot is a loop device full of 0xAA as root, else "".
func loopDeviceIfRoot(t *testing.T, size int) string {
	if os.Geteuid() != 0 {
		return ""
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		return ""
	}
	return loopDevice(t, size, 0xAA)
}

// TestSparse writes an image that is 60 % zeros to a file: it reads back exact and occupies
// about 40 % of its size.
func TestSparse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		zeroPct int
	}{
		{"60% zeros", 60},
		{"no zeros (control)", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := makeImage(20<<20, tc.zeroPct, 7)
			blob := compress(api.FormatRawZstd, img)
			target := filepath.Join(t.TempDir(), "disk.img")
			src := Source{URL: serve(t, &server{blob: blob}), Name: "test", UncompressedDigest: digest(img), UncompressedSize: int64(len(img))}
			res, err := Write(context.Background(), src, target, fastOptions(t))
			if err != nil {
				t.Fatalf("Write: %v", err)
			}
			if got := fileDigest(t, target, 1<<40); got != digest(img) {
				t.Errorf("the target holds %s, want %s", got, digest(img))
			}
			st, err := os.Stat(target)
			if err != nil {
				t.Fatal(err)
			}
			used, ok := allocated(st)
			if !ok {
				t.Skip("this system does not say how much of a file is allocated")
			}
			share := float64(used) / float64(st.Size())
			want := float64(100-tc.zeroPct) / 100
			t.Logf("%d bytes, %d allocated (%.0f %%), %d zero bytes skipped", st.Size(), used, 100*share, res.Zero)
			if st.Size() != int64(len(img)) || share < want-0.05 || share > want+0.05 {
				t.Errorf("the file is %d bytes with %.0f %% allocated, want %d bytes with %.0f %% ± 5", st.Size(), 100*share, len(img), 100*want)
			}
		})
	}
}

// TestTooSmall refuses a device smaller than the image before writing anything.
func TestTooSmall(t *testing.T) {
	for _, tc := range []struct {
		name    string
		devSize int
		ok      bool
	}{
		{"4 MiB device", 4 << 20, false},
		{"8 MiB device (control)", 8 << 20, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := blobs()[api.FormatRaw]
			dev := loopDevice(t, tc.devSize, 0xAA)
			src := Source{URL: serve(t, &server{blob: img}), Name: "test", Format: api.FormatRaw, Digest: digest(img), UncompressedSize: int64(len(img))}
			_, err := Write(context.Background(), src, dev, fastOptions(t))
			head := readAt(t, dev, 0, 1<<20)
			if tc.ok {
				if err != nil {
					t.Fatalf("Write: %v", err)
				}
				if !bytes.Equal(head, img[:1<<20]) {
					t.Error("the head is not the image's after a good write")
				}
				return
			}
			if err == nil {
				t.Fatal("Write succeeded onto a device too small")
			}
			for _, s := range []string{dev, strconv.Itoa(tc.devSize), strconv.Itoa(len(img))} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not name %s", err, s)
				}
			}
			if !bytes.Equal(head, bytes.Repeat([]byte{0xAA}, 1<<20)) {
				t.Error("the device was written, want it untouched")
			}
		})
	}
}

// TestTooSmallUnknownSize: without the image's size, the writer stops at the device's end.
func TestTooSmallUnknownSize(t *testing.T) {
	img := blobs()[api.FormatRaw]
	dev := loopDevice(t, 4<<20, 0xAA)
	src := Source{URL: serve(t, &server{blob: img}), Name: "test", Format: api.FormatRaw, Digest: digest(img)}
	_, err := Write(context.Background(), src, dev, fastOptions(t))
	if err == nil || !strings.Contains(err.Error(), "larger than device") {
		t.Fatalf("Write = %v, want an error saying the image is larger than the device", err)
	}
	if head := readAt(t, dev, 0, 1<<20); !allZero(head) {
		t.Error("the device's head is written, want zeros")
	}
}

// TestStall: a server that stops sending mid-body is dropped after Stall and resumed.
func TestStall(t *testing.T) {
	img := blobs()[api.FormatRaw]
	s := &server{blob: img, stallAt: imageSize / 3, stall: time.Second}
	opts := fastOptions(t)
	opts.Stall = 300 * time.Millisecond
	target := filepath.Join(t.TempDir(), "disk.img")
	start := time.Now()
	res, err := Write(context.Background(), Source{URL: serve(t, s), Name: "test", UncompressedDigest: digest(img)}, target, opts)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if res.Resumes != 1 || time.Since(start) > 5*time.Second {
		t.Errorf("Write resumed %d times in %s, want once, well within the server's stall", res.Resumes, time.Since(start))
	}
	if got := fileDigest(t, target, 1<<40); got != digest(img) {
		t.Errorf("the target holds %s, want %s", got, digest(img))
	}
}

// TestRefused: what cannot be written or checked is refused before anything is written.
func TestRefused(t *testing.T) {
	img := blobs()[api.FormatRaw]
	qcow := append([]byte{'Q', 'F', 'I', 0xfb, 0, 0, 0, 3}, make([]byte, 4096)...)
	for _, tc := range []struct {
		name string
		blob []byte
		src  Source
		want string
	}{
		{"qcow2 declared", img, Source{Format: api.FormatQcow2, UncompressedDigest: digest(img)}, "cairn build converts"},
		{"qcow2 detected", qcow, Source{Digest: digest(qcow)}, "cairn build converts"},
		{"no uncompressed digest", blobs()[api.FormatRawZstd], Source{Digest: digest(blobs()[api.FormatRawZstd])}, "no uncompressed digest"},
		{"bad digest", img, Source{UncompressedDigest: "sha256:abc"}, "64 hex digits"},
		{"not found", nil, Source{UncompressedDigest: digest(img)}, "404"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := serve(t, &server{blob: tc.blob})
			if tc.blob == nil {
				ts := httptest.NewServer(http.NotFoundHandler())
				t.Cleanup(ts.Close)
				url = ts.URL
			}
			tc.src.URL, tc.src.Name = url, "test"
			target := filepath.Join(t.TempDir(), "disk.img")
			if err := os.WriteFile(target, []byte("old"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Write(context.Background(), tc.src, target, fastOptions(t))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Write = %v, want an error containing %q", err, tc.want)
			}
			if b, _ := os.ReadFile(target); string(b) != "old" {
				t.Errorf("the target holds %q, want it untouched", b)
			}
		})
	}
}

// TestGiveUp: a server that is gone makes Write give up after Tries, saying so.
func TestGiveUp(t *testing.T) {
	ts := httptest.NewServer(http.NotFoundHandler())
	url := ts.URL + "/blob"
	ts.Close()
	opts := fastOptions(t)
	opts.Tries = 3
	_, err := Write(context.Background(), Source{URL: url, Name: "test", UncompressedDigest: digest(nil)}, filepath.Join(t.TempDir(), "d"), opts)
	if err == nil || !strings.Contains(err.Error(), "giving up after 3 tries") {
		t.Fatalf("Write = %v, want giving up after 3 tries", err)
	}
}

// TestTmpfs writes to a file on tmpfs, which refuses O_DIRECT.
func TestTmpfs(t *testing.T) {
	dir, err := os.MkdirTemp("/dev/shm", "cairn-image-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	img := blobs()[api.FormatRaw]
	target := filepath.Join(dir, "disk.img")
	src := Source{URL: serve(t, &server{blob: blobs()[api.FormatRawZstd]}), Name: "test", UncompressedDigest: digest(img)}
	if _, err := Write(context.Background(), src, target, fastOptions(t)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if got := fileDigest(t, target, 1<<40); got != digest(img) {
		t.Errorf("the target holds %s, want %s", got, digest(img))
	}
}

// TestZeroTail: an image that ends in a run of zeros of no whole number of blocks reads back
// exact, from a file (a hole, then the size set) and from a device that held other bytes.
func TestZeroTail(t *testing.T) {
	img := append(makeImage(1<<20, 0, 3), make([]byte, 300<<10+123)...)
	blob := compress(api.FormatRawZstd, img)
	targets := map[string]string{"file": filepath.Join(t.TempDir(), "disk.img")}
	if dev := loopDeviceIfRoot(t, 4<<20); dev != "" {
		targets["device"] = dev
	}
	for name, target := range targets {
		t.Run(name, func(t *testing.T) {
			src := Source{URL: serve(t, &server{blob: blob}), Name: "test", UncompressedDigest: digest(img), UncompressedSize: int64(len(img))}
			res, err := Write(context.Background(), src, target, fastOptions(t))
			if err != nil {
				t.Fatalf("Write: %v", err)
			}
			if got := fileDigest(t, target, int64(len(img))); got != digest(img) {
				t.Errorf("the target holds %s, want %s", got, digest(img))
			}
			if res.Zero != 300<<10 {
				t.Errorf("Write skipped %d zero bytes, want the 300 KiB of whole blocks", res.Zero)
			}
		})
	}
}

func TestSourceOf(t *testing.T) {
	img := api.Image{Artifact: "debian-13", URL: "http://10.0.0.1/v2/os/debian-13/blobs/sha256:ab", Digest: "sha256:ab", Size: 10,
		Format: api.FormatRawZstd, UncompressedDigest: "sha256:cd", UncompressedSize: 20}
	want := Source{URL: img.URL, Name: "debian-13", Format: api.FormatRawZstd, Size: 10, Digest: "sha256:ab", UncompressedDigest: "sha256:cd", UncompressedSize: 20}
	if got := SourceOf(img); got != want {
		t.Errorf("SourceOf(%+v) = %+v, want %+v", img, got, want)
	}
}
