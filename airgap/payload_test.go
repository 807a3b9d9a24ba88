package airgap_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/airgap/airgaptest"
)

func TestStoresFind(t *testing.T) {
	lower, upper := t.TempDir(), filepath.Join(t.TempDir(), "upper")
	kernel := bytes.Repeat([]byte("kernel"), 1000)
	airgaptest.FileStore(t, lower, []airgaptest.Netboot{{Name: "vmlinuz", Type: airgap.NetbootKernel, Content: kernel}},
		[]airgaptest.OSImage{{Name: "debian-12", Content: []byte("raw disk")}})
	s := airgap.NewStores("", lower, upper) // no store at "", and the upper one does not exist yet: it is empty
	a, p, err := s.Find(airgap.KindNetboot, "vmlinuz")
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "vmlinuz" || p.Digest != digest.FromBytes(kernel) || p.Size != int64(len(kernel)) || p.MediaType != airgap.MediaTypeNetbootPrefix+"kernel" {
		t.Errorf("Find = %+v, %+v", a, p)
	}
	if b, err := os.ReadFile(p.Path); err != nil || !bytes.Equal(b, kernel) {
		t.Errorf("the payload's path %s holds %d bytes, %v; want the kernel", p.Path, len(b), err)
	}
	if a, p, err := s.Find(airgap.KindOS, "debian-12"); err != nil || a.OS == nil || p.Size != 8 {
		t.Errorf("Find(os, debian-12) = %+v, %+v, %v", a, p, err)
	}
	// A kind is part of the name: the OS image is no netboot asset.
	if _, _, err := s.Find(airgap.KindNetboot, "debian-12"); !errors.Is(err, airgap.ErrNoArtifact) {
		t.Errorf("Find(netboot, debian-12) = %v, want ErrNoArtifact", err)
	}
	// A blob cut short is reported, not served.
	if err := os.Truncate(p.Path, 3); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Find(airgap.KindNetboot, "vmlinuz"); err == nil || !strings.Contains(err.Error(), "cairn bundle verify") {
		t.Errorf("Find of a truncated blob = %v, want an error saying to verify", err)
	}
}
