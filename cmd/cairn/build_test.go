package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildCommand runs keygen, build --plan, build and bundle verify the way an operator
// would, on a build of local files (the registry side is covered in package build).
func TestBuildCommand(t *testing.T) {
	dir := t.TempDir()
	if code, _, errOut := cairn(t, "bundle", "keygen", "--out", filepath.Join(dir, "k")); code != exitOK {
		t.Fatalf("keygen: exit %d: %s", code, errOut)
	}
	if err := os.WriteFile(filepath.Join(dir, "motd"), []byte("welcome to the rack\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	toml := `[signing]
key = "k.key"

[[file]]
name = "motd"
source = "motd"
sha256 = "a6a4e9d85b3f3bc7ee6c1d07ed3c8c74a1bc7e21b6db7e0fb48e9a8cbc1dcb6e"
`
	// The sha256 above is wrong on purpose: the build must say so and write nothing.
	build := filepath.Join(dir, "build.toml")
	if err := os.WriteFile(build, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "store")
	code, _, errOut := cairn(t, "build", "-f", build, "-o", out, "--cache", filepath.Join(dir, "cache"))
	if code != exitFailed || !strings.Contains(errOut, "expected sha256 a6a4e9d8") {
		t.Fatalf("build with a wrong sha256: exit %d, stderr %q", code, errOut)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a failed build created its output")
	}

	sum := sha256Hex(t, filepath.Join(dir, "motd"))
	good := strings.Replace(toml, "a6a4e9d85b3f3bc7ee6c1d07ed3c8c74a1bc7e21b6db7e0fb48e9a8cbc1dcb6e", sum, 1)
	if err := os.WriteFile(build, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	code, planOut, errOut := cairn(t, "build", "-f", build, "--plan", "--cache", filepath.Join(dir, "cache"))
	if code != exitOK || !strings.Contains(planOut, "motd") || !strings.Contains(planOut, "20 B") {
		t.Fatalf("build --plan: exit %d\n%s\n%s", code, planOut, errOut)
	}
	code, stdout, errOut := cairn(t, "build", "-f", build, "-o", out, "--cache", filepath.Join(dir, "cache"))
	if code != exitOK || !strings.Contains(stdout, "wrote "+out) {
		t.Fatalf("build: exit %d\n%s\n%s", code, stdout, errOut)
	}
	if code, _, errOut := cairn(t, "bundle", "verify", out, "--key", filepath.Join(dir, "k.pub")); code != exitOK {
		t.Fatalf("bundle verify: exit %d: %s", code, errOut)
	}

	if err := os.WriteFile(build, []byte("[signing]\nkey = 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ = cairn(t, "build", "-f", build, "--plan")
	if code != exitFailed || !strings.Contains(stdout, build+":2:7: signing.key: expected a string") {
		t.Errorf("a broken build.toml: exit %d, output %q", code, stdout)
	}
	if code, _, _ := cairn(t, "build", "-f", build); code != exitUsage {
		t.Errorf("build without -o: exit %d, want %d", code, exitUsage)
	}
}

func sha256Hex(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
