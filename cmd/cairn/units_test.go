package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-appliance/cairn/airgap/airgaptest"
)

func TestSiteUnits(t *testing.T) {
	store := t.TempDir()
	airgaptest.SiteStore(t, store, "../../examples/site")
	code, out, errOut := cairn(t, "site", "units", "--bundle", store, "../../examples/site", "web-01")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"# /etc/containers/systemd/cairn/cairn-", "[Container]", "@sha256:", "Pull=never",
		"# /etc/containers/registries.conf.d/50-cairn.conf", `location = "10.20.0.1:5000/`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The same files under --out, byte for byte what was printed.
	dir := t.TempDir()
	if code, _, errOut := cairn(t, "site", "units", "--bundle", filepath.Join(store, "bundle.json"), "--out", dir, "../../examples/site", "web-01"); code != 0 {
		t.Fatalf("--out: exit %d: %s", code, errOut)
	}
	units, _ := filepath.Glob(filepath.Join(dir, "etc/containers/systemd/cairn/*.container"))
	if len(units) == 0 {
		t.Fatal("--out wrote no unit")
	}
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil || !strings.Contains(out, string(b)) {
			t.Errorf("%s differs from what was printed (%v)", u, err)
		}
	}

	// Controls: a store without the site's images names the image key; an unknown host its hosts.
	empty := t.TempDir()
	airgaptest.SealedStore(t, empty, "example.com/other:1")
	code, _, errOut = cairn(t, "site", "units", "--bundle", empty, "../../examples/site", "web-01")
	if code != 1 || !strings.Contains(errOut, "examples/site/roles/web.toml:") || !strings.Contains(errOut, "is not in the appliance's store") {
		t.Errorf("missing images: exit %d: %s", code, errOut)
	}
	code, _, errOut = cairn(t, "site", "units", "--bundle", store, "../../examples/site", "nope")
	if code != 1 || !strings.Contains(errOut, `no host "nope"`) {
		t.Errorf("unknown host: exit %d: %s", code, errOut)
	}
}
