package content

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// TestOSImageDigest keeps OSImageSHA256 (which examples/build.toml pins) equal to what OSImage
// makes, and OSImage deterministic.
func TestOSImageDigest(t *testing.T) {
	a, err := OSImage()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := OSImage()
	if got := SHA256(a); got != OSImageSHA256 || SHA256(b) != got {
		t.Errorf("OSImage() sha256 = %s (then %s), want %s; update OSImageSHA256 and examples/build.toml", got, SHA256(b), OSImageSHA256)
	}
}

func TestImagesAreDeterministic(t *testing.T) {
	for _, ref := range Images {
		a, err := Image(ref)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := Image(ref)
		da, _ := a.Digest()
		db, _ := b.Digest()
		if da != db {
			t.Errorf("Image(%s) gives %s, then %s", ref, da, db)
		}
	}
}

// TestImagesValidate checks the stand-ins are images a client accepts, layers and all.
func TestImagesValidate(t *testing.T) {
	for _, ref := range Images {
		img, err := Image(ref)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(img); err != nil {
			t.Errorf("Image(%s): %v", ref, err)
		}
	}
}

// TestServe serves the content as the demo and the VM tier do, and pulls every image back.
func TestServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := Serve(ctx, t.TempDir()); err != nil {
		if strings.Contains(err.Error(), "taken") {
			t.Skip(err) // the demo or the VM tier serves it right now
		}
		t.Fatal(err)
	}
	for _, ref := range Images {
		want, err := Image(ref)
		if err != nil {
			t.Fatal(err)
		}
		r, err := name.ParseReference(Addr+"/"+ref, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		got, err := remote.Image(r, remote.WithContext(ctx))
		if err != nil {
			t.Fatalf("pulling %s: %v", r, err)
		}
		if gd, _ := got.Digest(); gd != mustDigest(t, want) {
			t.Errorf("%s served with digest %s, want %s", ref, gd, mustDigest(t, want))
		}
	}
}

func mustDigest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}
