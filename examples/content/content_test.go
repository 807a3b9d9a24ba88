package content

import (
	"testing"

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
