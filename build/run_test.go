package build

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/build/buildtest"
)

// TestFailedISOLeavesNoStore: a build asked for an ISO it could not master leaves no store at
// -o either, which would stand in the way of the next run.
func TestFailedISOLeavesNoStore(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "store")
	o := Options{Config: buildtest.Build(t, "\n[appliance]\nbase = \"no-such-base\"\n"), Output: out, CacheDir: t.TempDir(),
		Created: time.Unix(1700000000, 0), ISO: filepath.Join(t.TempDir(), "cairn.iso")}
	_, err := Run(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "appliance base") {
		t.Fatalf("Run() = %v, want an error about the appliance base", err)
	}
	if got := leftovers(t, parent, ""); len(got) != 0 {
		t.Errorf("a build whose ISO failed left %v", got)
	}
}
