package registry

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/cairn-appliance/cairn/airgap"
)

var (
	bigOnce sync.Once
	bigDir  string
	bigPub  ed25519.PublicKey
	bigErr  error
)

// bigStore builds, once per process, a 2 GiB store: 8 images of 8 layers of 32 MiB.
func bigStore(b *testing.B) (string, ed25519.PublicKey) {
	b.Helper()
	store(b) // makes tmpRoot
	bigOnce.Do(func() {
		bigDir = filepath.Join(tmpRoot, "store-2g")
		ctx := context.Background()
		var s *airgap.Store
		s, bigErr = airgap.Create(ctx, airgap.StoreConfig{Dir: bigDir, Created: time.Unix(0, 0)})
		if bigErr != nil {
			return
		}
		rng := rand.NewChaCha8([32]byte{'2', 'g'})
		for i := range 8 {
			img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
			img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
			for range 8 {
				data := make([]byte, 32<<20)
				_, _ = rng.Read(data)
				if img, bigErr = mutate.AppendLayers(img, static.NewLayer(data, types.OCILayer)); bigErr != nil {
					return
				}
			}
			if bigErr = s.AddImage(ctx, fmt.Sprintf("bench.local/verify/%d:1", i), img); bigErr != nil {
				return
			}
		}
		var privPEM, pubPEM []byte
		if privPEM, pubPEM, bigErr = airgap.GenerateKey(); bigErr != nil {
			return
		}
		key, err := airgap.ParsePrivateKey(privPEM)
		if err != nil {
			bigErr = err
			return
		}
		if bigPub, bigErr = airgap.ParsePublicKey(pubPEM); bigErr != nil {
			return
		}
		_, bigErr = s.Seal(ctx, key)
	})
	if bigErr != nil {
		b.Fatalf("building the 2 GiB store: %v", bigErr)
	}
	return bigDir, bigPub
}

// blobFiles lists every blob data file of a store.
func blobFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(filepath.Join(dir, "docker/registry/v2/blobs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	})
	return files, err
}

// evict writes the store's blobs back and drops them from the page cache, so the next read
// comes from the disk. It touches only these files, not the rest of the machine's cache.
func evict(files []string) error {
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		_ = unix.Fdatasync(int(f.Fd()))
		err = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// readAll reads every file with one reader per CPU and no hashing: the disk's speed, the anchor.
func readAll(files []string) (int64, error) {
	var (
		mu    sync.Mutex
		total int64
	)
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for _, p := range files {
		g.Go(func() error {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			n, err := io.CopyBuffer(io.Discard, f, make([]byte, 1<<20))
			mu.Lock()
			total += n
			mu.Unlock()
			return err
		})
	}
	return total, g.Wait()
}

// BenchmarkVerify: airgap.Verify on a 2 GiB store read cold from disk, against reading the
// same blobs without hashing (the disk's speed) in the same run. Goal: ratio near 1.
func BenchmarkVerify(b *testing.B) {
	dir, pub := bigStore(b)
	files, err := blobFiles(dir)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var (
		readBytes, verifyBytes int64
		readTime, verifyTime   time.Duration
		warmBytes              int64
		warmTime               time.Duration
	)
	b.ResetTimer()
	for range b.N {
		if err := evict(files); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		n, err := readAll(files)
		if err != nil {
			b.Fatal(err)
		}
		readTime += time.Since(start)
		readBytes += n

		if err := evict(files); err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		rep, err := airgap.Verify(ctx, dir, pub)
		if err != nil {
			b.Fatal(err)
		}
		verifyTime += time.Since(start)
		verifyBytes += rep.Bytes

		start = time.Now() // again, from the page cache: the hashing's own speed
		rep, err = airgap.Verify(ctx, dir, pub)
		if err != nil {
			b.Fatal(err)
		}
		warmTime += time.Since(start)
		warmBytes += rep.Bytes
	}
	b.StopTimer()
	mbps := func(n int64, d time.Duration) float64 { return float64(n) / 1e6 / d.Seconds() }
	read, verify, warm := mbps(readBytes, readTime), mbps(verifyBytes, verifyTime), mbps(warmBytes, warmTime)
	b.ReportMetric(verify, "verify-MB/s")
	b.ReportMetric(read, "disk-read-MB/s")
	b.ReportMetric(verify/read, "ratio")
	b.ReportMetric(warm, "verify-cached-MB/s")
	b.Logf("2 GiB store, %d CPUs: verify %.0f MB/s from disk, plain read %.0f MB/s (ratio %.2f); verify from page cache %.0f MB/s",
		runtime.GOMAXPROCS(0), verify, read, verify/read, warm)
}
