// Package buildtest serves on loopback what a build.toml names, for the tests of cairn build:
// a registry (go-containerregistry's, in memory) holding two images that share a layer, and a
// file over HTTP. It is for tests only; examples/content serves the example build.
package buildtest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/cairn-appliance/cairn/airgap"
)

// Build serves the content on loopback until the test ends, writes a new signing key and a
// build.toml naming the content into a new directory, and returns the build.toml's path. more
// is appended to the build.toml (a [[file]] the test serves itself, say).
//
// The images share their base layer, so that a build fetches it once: the bytes it counts for
// one of them fall short of that image's size.
func Build(tb testing.TB, more string) string {
	tb.Helper()
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	tb.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")
	base := layer(tb, 96<<10)
	for repo, own := range map[string]int64{"team/web:1.0": 32 << 10, "team/api:2.0": 48 << 10} {
		ref, err := name.ParseReference(host + "/" + repo)
		if err != nil {
			tb.Fatal(err)
		}
		if err := remote.Write(ref, image(tb, base, layer(tb, own))); err != nil {
			tb.Fatalf("pushing %s: %v", ref, err)
		}
	}

	motd := []byte("welcome to the rack\n")
	files := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/motd" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(motd)
	}))
	tb.Cleanup(files.Close)

	dir := tb.TempDir()
	priv, _, err := airgap.GenerateKey()
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bundle.key"), priv, 0o600); err != nil {
		tb.Fatal(err)
	}
	sum := sha256.Sum256(motd)
	toml := fmt.Sprintf(`[signing]
key = "bundle.key"

[[container]]
ref = "%[1]s/team/web:1.0"

[[container]]
ref = "%[1]s/team/api:2.0"

[[file]]
name = "motd"
source = "%[2]s/motd"
sha256 = "%[3]s"
`, host, files.URL, hex.EncodeToString(sum[:])) + more
	p := filepath.Join(dir, "build.toml")
	if err := os.WriteFile(p, []byte(toml), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// StalledFile serves a file that never finishes downloading, until the test ends: it is said to
// be 1 MB, and 1000 bytes of it come. It returns a [[file]] naming it, to add to a build.toml,
// and a channel closed once a download of it has begun.
func StalledFile(tb testing.TB) (toml string, started <-chan struct{}) {
	tb.Helper()
	begun := make(chan struct{})
	var once sync.Once
	end := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000000")
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		once.Do(func() { close(begun) })
		select {
		case <-r.Context().Done():
		case <-end:
		}
	}))
	tb.Cleanup(srv.Close)
	tb.Cleanup(func() { close(end) }) // before srv.Close, which waits for the handler
	return fmt.Sprintf("\n[[file]]\nname = \"stalled\"\nsource = %q\nsha256 = %q\n", srv.URL+"/stalled.bin", strings.Repeat("a", 64)), begun
}

func layer(tb testing.TB, size int64) v1.Layer {
	tb.Helper()
	l, err := random.Layer(size, types.OCILayer)
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// image is a linux/amd64 image of layers.
func image(tb testing.TB, layers ...v1.Layer) v1.Image {
	tb.Helper()
	im, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		tb.Fatal(err)
	}
	cf, err := im.ConfigFile()
	if err != nil {
		tb.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	if im, err = mutate.ConfigFile(im, cf); err != nil {
		tb.Fatal(err)
	}
	return mutate.MediaType(im, types.OCIManifestSchema1)
}
