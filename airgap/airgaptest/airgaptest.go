// Package airgaptest makes small sealed stores for the tests of packages that serve, carry or
// master one. It is for tests only.
package airgaptest

import (
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/cairn-appliance/cairn/airgap"
)

// SealedStore writes a store into dir holding one random single-layer image under name,
// seals it with a new key and returns the image's digest.
func SealedStore(tb testing.TB, dir, name string) v1.Hash {
	tb.Helper()
	ctx := context.Background()
	st, err := airgap.Create(ctx, airgap.StoreConfig{Dir: dir, Created: time.Unix(1700000000, 0)})
	if err != nil {
		tb.Fatal(err)
	}
	img, err := random.Image(512, 1)
	if err != nil {
		tb.Fatal(err)
	}
	if err := st.AddImage(ctx, name, img); err != nil {
		tb.Fatal(err)
	}
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := st.Seal(ctx, key); err != nil {
		tb.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		tb.Fatal(err)
	}
	return d
}
