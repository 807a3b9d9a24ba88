package airgap_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/airgap/airgaptest"
)

// mediumTag is the medium's image in these tests, under the name the registry was first found
// to take pushes for.
const mediumTag = "docker.io/library/nginx:1.27-alpine"

// writeUpper writes a sealed store into dir holding images by name, the way cairn fills the
// upper store: with airgap's store writer, not through the registry.
func writeUpper(t testing.TB, dir string, images map[string]v1.Image) {
	t.Helper()
	ctx := context.Background()
	s, err := airgap.Create(ctx, airgap.StoreConfig{Dir: dir, Created: epoch})
	must(t, err)
	for n, img := range images {
		must(t, s.AddImage(ctx, n, img))
	}
	_, err = s.Seal(ctx, newKeyOnly(t))
	must(t, err)
}

func randomImage(t testing.TB) v1.Image {
	t.Helper()
	img, err := random.Image(700, 2)
	must(t, err)
	return img
}

func randomLayer(t testing.TB) v1.Layer {
	t.Helper()
	l, err := random.Layer(700, types.OCILayer)
	must(t, err)
	return l
}

func ref(t testing.TB, host, r string) name.Reference {
	t.Helper()
	n, err := name.ParseReference(host+"/"+r, name.Insecure)
	must(t, err)
	return n
}

func digestOf(t testing.TB, host, r string) v1.Hash {
	t.Helper()
	desc, err := remote.Head(ref(t, host, r))
	must(t, err)
	return desc.Digest
}

// TestRegistryMediumTagNotShadowed puts a different manifest under the medium's tag in the upper
// store, on disk, as a faulty or hostile bundle might: the registry still serves the medium's,
// lists the tag once, and serves what upper adds beside it.
func TestRegistryMediumTagNotShadowed(t *testing.T) {
	lower, upper := t.TempDir(), t.TempDir()
	medium := airgaptest.SealedStore(t, lower, mediumTag)
	shadow, hotfix, added := randomImage(t), randomImage(t), randomImage(t)
	writeUpper(t, upper, map[string]v1.Image{
		mediumTag:                        shadow,
		"docker.io/library/nginx:hotfix": hotfix,
		"example.org/later/added:1":      added,
	})
	shadowDigest, err := shadow.Digest()
	must(t, err)
	if shadowDigest == medium {
		t.Fatal("the fixture's two images have one digest")
	}
	if _, err := os.Stat(filepath.Join(upper, "docker/registry/v2/repositories/docker.io/library/nginx/_manifests/tags/1.27-alpine/index/sha256", shadowDigest.Hex)); err != nil {
		t.Fatalf("the upper store does not hold the shadowing tag: %v", err)
	}
	host := serve(t, lower, upper)

	if got := digestOf(t, host, mediumTag); got != medium {
		t.Errorf("HEAD %s = %s, want the medium's %s (upper's is %s)", mediumTag, got, medium, shadowDigest)
	}
	img, err := remote.Image(ref(t, host, mediumTag))
	must(t, err)
	if got, _ := img.Digest(); got != medium {
		t.Errorf("GET %s = %s, want the medium's %s", mediumTag, got, medium)
	}
	for r, want := range map[string]v1.Image{"docker.io/library/nginx:hotfix": hotfix, "example.org/later/added:1": added} {
		d, err := want.Digest()
		must(t, err)
		if got := digestOf(t, host, r); got != d {
			t.Errorf("%s (added in upper) = %s, want %s", r, got, d)
		}
	}
	tags, err := remote.List(ref(t, host, mediumTag).Context())
	must(t, err)
	if got := strings.Join(tags, ","); got != "1.27-alpine,hotfix" {
		t.Errorf("tags of docker.io/library/nginx = %s, want 1.27-alpine,hotfix", got)
	}
}
