package content

import "testing"

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
