package build

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/bench/anchor"
	"github.com/cairn-appliance/cairn/build"
)

// The workload: 6 images of 100 MiB each (600 MiB in all), built on two 64 MiB base layers that
// three images each share, as images built FROM a common base do.
const (
	images   = 6
	baseSize = 64 << 20
	ownSize  = 36 << 20
)

// BenchmarkBuild pulls the workload from a loopback docker-registry (Debian's, distribution
// 2.8) with cairn build and, in the same run, with skopeo copy into one OCI layout per image
// (six skopeo processes at once). It reports both times and the bytes each leaves on disk, and
// a warm rebuild (same cache, new output). Goals: cairn time <= skopeo time, cairn bytes <=
// 0.7x skopeo's, warm rebuild < 5% of the cold build.
func BenchmarkBuild(b *testing.B) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		b.Skip("skopeo is not installed; it is this benchmark's anchor: run scripts/deps.sh")
	}
	root := b.TempDir()
	host := anchor.StartDockerRegistry(b, filepath.Join(root, "registry"), false)
	refs := pushWorkload(b, host)
	dir := filepath.Join(root, "project")
	writeProject(b, dir, refs)

	for b.Loop() {
		_ = os.RemoveAll(filepath.Join(root, "run"))
		run := filepath.Join(root, "run")
		ctx := context.Background()
		opts := build.Options{Config: filepath.Join(dir, "build.toml"), Output: filepath.Join(run, "cold"), CacheDir: filepath.Join(run, "cache"), Created: time.Unix(1700000000, 0)}

		start := time.Now()
		res, err := build.Run(ctx, opts)
		if err != nil {
			b.Fatal(err)
		}
		cold := time.Since(start)
		cairnBytes := du(b, opts.Output)

		if err := os.MkdirAll(filepath.Join(run, "skopeo"), 0o755); err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		var g errgroup.Group
		for i, ref := range refs {
			g.Go(func() error {
				out, err := exec.Command(skopeo, "copy", "--quiet", "--src-tls-verify=false",
					"docker://"+ref, fmt.Sprintf("oci:%s:latest", filepath.Join(run, "skopeo", fmt.Sprint(i)))).CombinedOutput()
				if err != nil {
					return fmt.Errorf("skopeo copy %s: %w: %s", ref, err, out)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
		skopeoTime := time.Since(start)
		skopeoBytes := du(b, filepath.Join(run, "skopeo"))

		warmOpts := opts
		warmOpts.Output = filepath.Join(run, "warm")
		start = time.Now()
		warmRes, err := build.Run(ctx, warmOpts)
		if err != nil {
			b.Fatal(err)
		}
		warm := time.Since(start)

		b.ReportMetric(cold.Seconds(), "cairn-s")
		b.ReportMetric(skopeoTime.Seconds(), "skopeo-s")
		b.ReportMetric(cold.Seconds()/skopeoTime.Seconds(), "time-ratio")
		b.ReportMetric(float64(cairnBytes)/float64(skopeoBytes), "bytes-ratio")
		b.ReportMetric(warm.Seconds()/cold.Seconds(), "warm/cold")
		b.Logf("6 images, 600 MiB pulled: cairn %.1fs, %d MiB on disk (%d blobs fetched); skopeo x6 %.1fs, %d MiB on disk",
			cold.Seconds(), cairnBytes>>20, res.BlobsFetched, skopeoTime.Seconds(), skopeoBytes>>20)
		b.Logf("time ratio cairn/skopeo %.2f (goal <= 1); bytes ratio %.2f (goal <= 0.70); warm rebuild %.2fs = %.1f%% of cold (goal < 5%%), %d blobs fetched",
			cold.Seconds()/skopeoTime.Seconds(), float64(cairnBytes)/float64(skopeoBytes), warm.Seconds(), 100*warm.Seconds()/cold.Seconds(), warmRes.BlobsFetched)
	}
}

// du adds up the sizes of the files under dir, as they use the disk.
func du(b *testing.B, dir string) int64 {
	b.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			n += info.Size()
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// pushWorkload pushes the six images and returns their references.
func pushWorkload(b *testing.B, host string) []string {
	b.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	blob := func(size int) v1.Layer {
		p := make([]byte, size)
		for i := 0; i+8 <= len(p); i += 8 {
			v := rng.Uint64()
			for j := range 8 {
				p[i+j] = byte(v >> (8 * j))
			}
		}
		return static.NewLayer(p, types.OCILayer) // registries carry layers as opaque bytes
	}
	bases := []v1.Layer{blob(baseSize), blob(baseSize)}
	var refs []string
	for i := range images {
		img, err := mutate.AppendLayers(empty.Image, bases[i%2], blob(ownSize))
		if err != nil {
			b.Fatal(err)
		}
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		ref := fmt.Sprintf("%s/bench/app%d:1.0", host, i)
		r, err := name.ParseReference(ref)
		if err != nil {
			b.Fatal(err)
		}
		if err := remote.Write(r, img); err != nil {
			b.Fatalf("pushing %s: %v", ref, err)
		}
		refs = append(refs, ref)
	}
	return refs
}

func writeProject(b *testing.B, dir string, refs []string) {
	b.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	priv, _, err := airgap.GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bundle.key"), priv, 0o600); err != nil {
		b.Fatal(err)
	}
	toml := "[signing]\nkey = \"bundle.key\"\n"
	for _, r := range refs {
		toml += fmt.Sprintf("\n[[container]]\nref = %q\n", r)
	}
	if err := os.WriteFile(filepath.Join(dir, "build.toml"), []byte(toml), 0o600); err != nil {
		b.Fatal(err)
	}
}
