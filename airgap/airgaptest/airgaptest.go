// Package airgaptest makes small sealed stores for the tests of packages that serve, carry or
// master one. It is for tests only.
package airgaptest

import (
	"context"
	"crypto/ed25519"
	"slices"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/site"
)

// SealedStore writes a store into dir holding one random single-layer image under name,
// seals it with a new key and returns the image's digest.
func SealedStore(tb testing.TB, dir, name string) v1.Hash {
	tb.Helper()
	return SealedStoreOf(tb, dir, name)[0]
}

// SealedStoreOf writes a store into dir holding a random single-layer image under each name
// (a site's images, say), seals it with a new key and returns the images' digests, in order.
func SealedStoreOf(tb testing.TB, dir string, names ...string) []v1.Hash {
	tb.Helper()
	ctx := context.Background()
	st, err := airgap.Create(ctx, airgap.StoreConfig{Dir: dir, Created: time.Unix(1700000000, 0)})
	if err != nil {
		tb.Fatal(err)
	}
	var digests []v1.Hash
	for _, name := range names {
		img, err := random.Image(512, 1)
		if err != nil {
			tb.Fatal(err)
		}
		if err := st.AddImage(ctx, name, img); err != nil {
			tb.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			tb.Fatal(err)
		}
		digests = append(digests, d)
	}
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := st.Seal(ctx, key); err != nil {
		tb.Fatal(err)
	}
	return digests
}

// SiteStore seals a store into dir holding a random image under every image name the site in
// siteDir uses, so that the site's images resolve, and one under each of extra.
func SiteStore(tb testing.TB, dir, siteDir string, extra ...string) {
	tb.Helper()
	s, err := site.Load(siteDir)
	if err != nil {
		tb.Fatal(err)
	}
	names := slices.Clone(extra)
	for _, img := range s.Images() {
		names = append(names, img.String())
	}
	SealedStoreOf(tb, dir, names...)
}
