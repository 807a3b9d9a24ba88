package airgap_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/cairn-appliance/cairn/airgap"
)

// A store is written once, sealed with a key, verified anywhere with the public half, and
// served in place.
func Example() {
	ctx := context.Background()
	tmp, _ := os.MkdirTemp("", "cairn-example-")
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "store")

	privPEM, pubPEM, _ := airgap.GenerateKey()
	priv, _ := airgap.ParsePrivateKey(privPEM)
	pub, _ := airgap.ParsePublicKey(pubPEM)

	s, _ := airgap.Create(ctx, airgap.StoreConfig{Dir: dir, Created: time.Unix(1_700_000_000, 0)})
	img, _ := random.Image(1024, 2)
	if err := s.AddImage(ctx, "nginx:1.27", img); err != nil {
		fmt.Println(err)
		return
	}
	ix, _ := s.Seal(ctx, priv)
	fmt.Println(ix.Artifacts[0].Ref(), ix.Created)

	if _, err := airgap.Verify(ctx, dir, pub); err != nil {
		fmt.Println(err)
		return
	}

	h, _ := airgap.NewRegistry(airgap.RegistryConfig{Dir: dir})
	srv := httptest.NewServer(h)
	defer srv.Close()
	ref, _ := name.ParseReference(srv.Listener.Addr().String()+"/docker.io/library/nginx:1.27", name.Insecure)
	pulled, _ := remote.Image(ref)
	want, _ := img.Digest()
	got, _ := pulled.Digest()
	fmt.Println(got == want)
	// Output:
	// docker.io/library/nginx:1.27 2023-11-14T22:13:20Z
	// true
}
