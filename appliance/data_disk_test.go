package appliance_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cairn-appliance/cairn/appliance"
	"github.com/cairn-appliance/cairn/appliance/appliancetest"
)

// TestInitDataLoopAndMount prepares a real block device, mounts it, and checks that DataDisk
// sees the mount and that InitData refuses a mounted device even when forced.
func TestInitDataLoopAndMount(t *testing.T) {
	ctx := context.Background()
	dev := appliancetest.Loop(t, 64<<20)
	if err := appliance.InitData(ctx, dev, false); err != nil {
		t.Fatalf("InitData(%s) = %v", dev, err)
	}
	if err := appliance.InitData(ctx, dev, false); !errors.Is(err, appliance.ErrNotBlank) {
		t.Errorf("InitData(%s) again = %v, want ErrNotBlank", dev, err)
	}
	dir := t.TempDir()
	if got, err := appliance.DataDisk(dir); err != nil || got != "" {
		t.Errorf("DataDisk(a plain directory) = %q, %v, want none", got, err)
	}
	appliancetest.Mount(t, dev, dir)
	if got, err := appliance.DataDisk(dir); err != nil || got != dev {
		t.Errorf("DataDisk(the mount) = %q, %v, want %q", got, err, dev)
	}
	if err := appliance.InitData(ctx, dev, true); err == nil || !strings.Contains(err.Error(), "is mounted at "+dir) {
		t.Errorf("InitData(mounted, force) = %v, want a refusal naming the mount", err)
	}
}
