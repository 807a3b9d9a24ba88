package build

import (
	"bytes"
	"fmt"
	"math/bits"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	agentapi "github.com/cairn-appliance/cairn/agent/api"
)

// TestZstdWindow: an image compressed with a window over what the agent decodes is refused
// with the fix; the control, the same data with the largest window the agent takes, passes,
// and so does a file that is not zstd.
func TestZstdWindow(t *testing.T) {
	dir := t.TempDir()
	if _, err := exec.LookPath("zstd"); err != nil {
		t.Skip("zstd (Debian package zstd) compresses the test's images: not installed")
	}
	// zstd reading a pipe does not know the size, so the window stays the one --long asks for.
	write := func(name string, window int) string {
		p := filepath.Join(dir, name)
		cmd := exec.Command("zstd", "-q", "-1", fmt.Sprintf("--long=%d", bits.Len(uint(window))-1), "-c")
		cmd.Stdin = bytes.NewReader(bytes.Repeat([]byte("cairn "), 1000))
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, out, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := checkZstdWindow(write("big.zst", 2*agentapi.MaxZstdWindow)); err == nil || !strings.Contains(err.Error(), "without --long") {
		t.Errorf("a 128 MiB window: %v; want a refusal saying how to compress it again", err)
	}
	if err := checkZstdWindow(write("ok.zst", agentapi.MaxZstdWindow)); err != nil {
		t.Errorf("a 64 MiB window: %v", err)
	}
	raw := filepath.Join(dir, "raw.img")
	if err := os.WriteFile(raw, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkZstdWindow(raw); err != nil {
		t.Errorf("a raw image: %v", err)
	}
}
