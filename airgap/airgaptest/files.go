package airgaptest

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/airgap"
)

// Netboot is a netboot asset for FileStore: name, type and content.
type Netboot struct {
	Name    string
	Type    airgap.NetbootType
	Content []byte
}

// OSImage is an OS image for FileStore: name and content (its format is detected).
type OSImage struct {
	Name    string
	Content []byte
}

// FileStore writes a sealed store into dir holding the given netboot assets and OS images.
func FileStore(tb testing.TB, dir string, netboot []Netboot, images []OSImage) {
	tb.Helper()
	ctx := context.Background()
	st, err := airgap.Create(ctx, airgap.StoreConfig{Dir: dir, Created: time.Unix(1700000000, 0)})
	if err != nil {
		tb.Fatal(err)
	}
	src := tb.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(src, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			tb.Fatal(err)
		}
		return p
	}
	for _, n := range netboot {
		if err := st.AddNetboot(ctx, airgap.NetbootAsset{Name: n.Name, Type: n.Type, Path: write(n.Name, n.Content)}); err != nil {
			tb.Fatal(err)
		}
	}
	for _, o := range images {
		if err := st.AddOSImage(ctx, airgap.OSImage{Name: o.Name, Path: write(o.Name, o.Content)}); err != nil {
			tb.Fatal(err)
		}
	}
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := st.Seal(ctx, key); err != nil {
		tb.Fatal(err)
	}
}
