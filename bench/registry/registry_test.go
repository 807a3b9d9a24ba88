package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sirupsen/logrus"

	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/bench/anchor"
)

// The workload the issue sets: 32 clients pulling one 256 MiB image of 8 layers.
const (
	clients   = 32
	layers    = 8
	layerSize = 32 << 20

	bigRepo, bigTag     = "bench.local/big", "256m"
	smallRepo, smallTag = "bench.local/agent", "1"
	smallLayers         = 2
	smallLayerSize      = 1 << 20
)

var (
	tmpRoot   string
	storeOnce sync.Once
	storeDir  string
	storeErr  error
)

func TestMain(m *testing.M) {
	// distribution logs every request at info level through logrus; a benchmark wants quiet.
	logrus.SetLevel(logrus.WarnLevel)
	code := m.Run()
	if tmpRoot != "" {
		_ = os.RemoveAll(tmpRoot)
	}
	os.Exit(code)
}

// store builds, once per process, a sealed store holding the 256 MiB image and a small one.
func store(b *testing.B) string {
	b.Helper()
	storeOnce.Do(func() {
		tmpRoot, storeErr = os.MkdirTemp("", "cairn-bench-registry-")
		if storeErr != nil {
			return
		}
		storeDir = filepath.Join(tmpRoot, "store")
		storeErr = writeStore(storeDir)
	})
	if storeErr != nil {
		b.Fatalf("building the benchmark store: %v", storeErr)
	}
	return storeDir
}

func writeStore(dir string) error {
	ctx := context.Background()
	s, err := airgap.Create(ctx, airgap.StoreConfig{Dir: dir, Created: time.Unix(0, 0)})
	if err != nil {
		return err
	}
	rng := rand.NewChaCha8([32]byte{'c', 'a', 'i', 'r', 'n'})
	image := func(n, size int) error {
		img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		for range n {
			// Registries serve blobs as opaque bytes, so random bytes stand in for layer tarballs.
			data := make([]byte, size)
			_, _ = rng.Read(data)
			var err error
			img, err = mutate.AppendLayers(img, static.NewLayer(data, types.OCILayer))
			if err != nil {
				return err
			}
		}
		name := bigRepo + ":" + bigTag
		if n == smallLayers {
			name = smallRepo + ":" + smallTag
		}
		return s.AddImage(ctx, name, img)
	}
	if err := image(layers, layerSize); err != nil {
		return err
	}
	if err := image(smallLayers, smallLayerSize); err != nil {
		return err
	}
	privPEM, _, err := airgap.GenerateKey()
	if err != nil {
		return err
	}
	key, err := airgap.ParsePrivateKey(privPEM)
	if err != nil {
		return err
	}
	_, err = s.Seal(ctx, key)
	return err
}

// readOnly returns dir bind-mounted read-only when running as root, as on the appliance's
// medium; otherwise dir itself, which the registry still never writes to.
func readOnly(b *testing.B, dir string) string {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Log("not root: serving the store from a writable directory (the registry is read-only either way)")
		return dir
	}
	mnt, err := os.MkdirTemp(tmpRoot, "ro-")
	if err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("mount", "--bind", dir, mnt).CombinedOutput(); err != nil {
		b.Logf("mount --bind failed (%v: %s); serving the store from its directory", err, out)
		return dir
	}
	b.Cleanup(func() { _ = exec.Command("umount", mnt).Run() })
	if out, err := exec.Command("mount", "-o", "remount,bind,ro", mnt).CombinedOutput(); err != nil {
		b.Fatalf("remounting read-only: %v: %s", err, out)
	}
	return mnt
}

// copyTree copies every file of src into dst, as a copy-then-serve tool must before serving.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

// startDockerRegistry runs Debian's docker-registry, read-only, over a copy of the store.
func startDockerRegistry(b *testing.B, dir string) string {
	b.Helper()
	if _, err := os.Stat(anchor.DockerRegistry); err != nil {
		b.Skipf("%s is not installed; the anchor of this benchmark is Debian's docker-registry: run scripts/deps.sh or apt-get install docker-registry", anchor.DockerRegistry)
	}
	cp := filepath.Join(tmpRoot, "docker-registry-copy")
	if _, err := os.Stat(cp); errors.Is(err, fs.ErrNotExist) {
		if err := copyTree(dir, cp); err != nil {
			b.Fatalf("copying the store for docker-registry: %v", err)
		}
	}
	return "http://" + anchor.StartDockerRegistry(b, cp, true)
}

func serveCairn(b *testing.B, dir string) string {
	b.Helper()
	h, err := airgap.NewRegistry(airgap.RegistryConfig{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	return srv.URL
}

func newClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: clients,
		DisableCompression:  true,
	}}
}

type descriptor struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// pull fetches repo:tag's manifest, config and layers and returns the bytes read. With verify,
// every blob is hashed and checked against its digest.
func pull(client *http.Client, base, repo, tag string, verify bool) (int64, error) {
	req, err := http.NewRequest(http.MethodGet, base+"/v2/"+repo+"/manifests/"+tag, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET manifest %s:%s: %s", repo, tag, resp.Status)
	}
	var m struct {
		Config descriptor   `json:"config"`
		Layers []descriptor `json:"layers"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return 0, err
	}
	total := int64(len(raw))
	buf := make([]byte, 256<<10)
	for _, d := range append([]descriptor{m.Config}, m.Layers...) {
		resp, err := client.Get(base + "/v2/" + repo + "/blobs/" + d.Digest)
		if err != nil {
			return total, err
		}
		h := sha256.New()
		w := io.Discard
		if verify {
			w = h
		}
		n, err := io.CopyBuffer(w, resp.Body, buf)
		resp.Body.Close()
		if err != nil {
			return total, err
		}
		if resp.StatusCode != http.StatusOK || n != d.Size {
			return total, fmt.Errorf("GET blob %s: %s, %d bytes, want %d", d.Digest, resp.Status, n, d.Size)
		}
		if verify && "sha256:"+hex.EncodeToString(h.Sum(nil)) != d.Digest {
			return total, fmt.Errorf("GET blob %s: content does not match its digest", d.Digest)
		}
		total += n
	}
	return total, nil
}

// pullConcurrently has every client pull the big image once and returns the bytes and time.
func pullConcurrently(base string) (int64, time.Duration, error) {
	client := newClient()
	defer client.CloseIdleConnections()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int64
		errs  []error
	)
	start := time.Now()
	for range clients {
		wg.Go(func() {
			n, err := pull(client, base, bigRepo, bigTag, false)
			mu.Lock()
			total += n
			if err != nil {
				errs = append(errs, err)
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return total, time.Since(start), errors.Join(errs...)
}

// BenchmarkRegistryPull: 32 concurrent clients pull a 256 MiB, 8-layer image from cairn's
// registry (serving the store in place, read-only) and, in the same run, from Debian's
// docker-registry (distribution 2.8) serving a copy of the same tree. Goal: ratio >= 0.95.
func BenchmarkRegistryPull(b *testing.B) {
	dir := store(b)
	cairnURL := serveCairn(b, readOnly(b, dir))
	distURL := startDockerRegistry(b, dir)
	client := newClient()
	for _, u := range []string{cairnURL, distURL} {
		if _, err := pull(client, u, bigRepo, bigTag, true); err != nil {
			b.Fatalf("checking a pull from %s: %v", u, err)
		}
	}
	var (
		cairnBytes, distBytes int64
		cairnTime, distTime   time.Duration
	)
	b.ResetTimer()
	for i := range b.N {
		order := []string{cairnURL, distURL}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, u := range order {
			n, d, err := pullConcurrently(u)
			if err != nil {
				b.Fatalf("pulling from %s: %v", u, err)
			}
			if u == cairnURL {
				cairnBytes, cairnTime = cairnBytes+n, cairnTime+d
			} else {
				distBytes, distTime = distBytes+n, distTime+d
			}
		}
	}
	b.StopTimer()
	cairnMBps := float64(cairnBytes) / 1e6 / cairnTime.Seconds()
	distMBps := float64(distBytes) / 1e6 / distTime.Seconds()
	b.ReportMetric(cairnMBps, "cairn-MB/s")
	b.ReportMetric(distMBps, "docker-registry-MB/s")
	b.ReportMetric(cairnMBps/distMBps, "ratio")
	b.Logf("%d clients x 256 MiB (8 layers): cairn %.0f MB/s, docker-registry 2.8 %.0f MB/s, ratio %.2f (goal >= 0.95)",
		clients, cairnMBps, distMBps, cairnMBps/distMBps)
}

// BenchmarkTimeToFirstPull: from nothing to a completed pull, serving the read-only store in
// place against copying it to local disk first and serving the copy (what Hauler does).
// The first pull is of the small image; the store also holds the 256 MiB one, which a
// copy-then-serve tool must copy before it can serve anything. Each run starts with the
// store's blobs out of the page cache, as after boot. Goal: >= 10x faster.
func BenchmarkTimeToFirstPull(b *testing.B) {
	dir := readOnly(b, store(b))
	first := func(srcDir string, copyFirst bool) (time.Duration, error) {
		start := time.Now()
		serveDir := srcDir
		if copyFirst {
			cp, err := os.MkdirTemp(tmpRoot, "copy-")
			if err != nil {
				return 0, err
			}
			defer os.RemoveAll(cp)
			if err := copyTree(srcDir, cp); err != nil {
				return 0, err
			}
			serveDir = cp
		}
		h, err := airgap.NewRegistry(airgap.RegistryConfig{Dir: serveDir})
		if err != nil {
			return 0, err
		}
		srv := httptest.NewServer(h)
		defer srv.Close()
		client := newClient()
		defer client.CloseIdleConnections()
		if _, err := pull(client, srv.URL, smallRepo, smallTag, true); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}
	files, err := blobFiles(dir)
	if err != nil {
		b.Fatal(err)
	}
	// Each iteration takes several samples and the medians are reported: a single slow
	// sample on a shared machine says more about the neighbours than about either way.
	const samples = 5
	var inPlace, copied []time.Duration
	b.ResetTimer()
	for range b.N {
		for range samples {
			// Fresh: nothing of the store in the page cache, as after booting from the medium.
			if err := evict(files); err != nil {
				b.Fatal(err)
			}
			d, err := first(dir, false)
			if err != nil {
				b.Fatalf("serving in place: %v", err)
			}
			inPlace = append(inPlace, d)
			if err := evict(files); err != nil {
				b.Fatal(err)
			}
			d, err = first(dir, true)
			if err != nil {
				b.Fatalf("copying, then serving: %v", err)
			}
			copied = append(copied, d)
		}
	}
	b.StopTimer()
	in, cp := median(inPlace), median(copied)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(in), "in-place-ms")
	b.ReportMetric(ms(cp), "copy-then-serve-ms")
	b.ReportMetric(float64(cp)/float64(in), "x-faster")
	b.Logf("time to first pull (2 MiB image, store of 258 MiB, cold cache), median of %d: in place %.1f ms, copy-then-serve %.1f ms: %.0fx faster (goal >= 10x)",
		len(inPlace), ms(in), ms(cp), float64(cp)/float64(in))
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
