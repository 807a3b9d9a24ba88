package iso_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/appliance"
	"github.com/cairn-appliance/cairn/build/iso"
)

// Example shows how cairn build masters its ISO: the base from the appliance cache (built on
// first use), the cairn binary in a layer of its own, the sealed store and the site seed.
func Example() {
	ctx := context.Background()
	base, err := appliance.Build(ctx, appliance.BuildConfig{Log: os.Stderr})
	if err != nil {
		log.Fatal(err)
	}
	// The layer is a directory tree laid over the base's root: here, just the binary.
	layer := filepath.Join(os.TempDir(), "cairn-layer")
	exe, err := os.Executable() // a CGO_ENABLED=0 build of cairn runs on any appliance
	if err != nil {
		log.Fatal(err)
	}
	if err := appliance.WriteCairnLayer(layer, exe); err != nil {
		log.Fatal(err)
	}

	epoch, err := airgap.SourceDateEpoch() // zero when SOURCE_DATE_EPOCH is unset: then "now"
	if err != nil {
		log.Fatal(err)
	}
	res, err := iso.Master(ctx, iso.Config{
		Base:            base,
		Layers:          []string{layer},
		Store:           "out/store", // sealed: bundle.json and bundle.sig at its top
		SiteSeed:        "examples/site",
		Output:          "out/cairn.iso", // out/cairn.iso.sha256 is written beside it
		VolumeLabel:     appliance.MediumLabel,
		SourceDateEpoch: epoch,
		Log:             os.Stderr,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d bytes, sha256 %s\n", res.Path, res.Size, res.SHA256)
}
