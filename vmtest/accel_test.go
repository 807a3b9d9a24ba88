package vmtest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/appliance"
)

// TestProbeBootsUnderTCG shows the probe can succeed, so that a KVM probe failing means KVM
// does not work here, not that the probe is broken.
func TestProbeBootsUnderTCG(t *testing.T) {
	f := applianceISO(t) // its kernel is the one the probe boots
	SetProbeKernel(filepath.Join(f.base, appliance.KernelFile))
	if err := probe(context.Background(), "tcg", 60*time.Second); err != nil {
		t.Fatalf("probe under TCG: %v", err)
	}
	t.Logf("accelerator for the VM tests: %s", Accel(t))
}
