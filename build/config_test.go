package build

import (
	"bytes"
	"os"
	"reflect"
	"testing"

	"github.com/cairn-appliance/cairn/site/tomlpos"
)

// TestDocsCoverEveryKey keeps docs/build.md in step with the model.
func TestDocsCoverEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../docs/build.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range tomlpos.Keys(reflect.TypeFor[Config]()) {
		if !bytes.Contains(doc, []byte("`"+k+"`")) {
			t.Errorf("docs/build.md does not document `%s`", k)
		}
	}
}

func TestLockMarshalIsStable(t *testing.T) {
	l := &Lock{
		Containers: []LockedImage{
			{Ref: "b", Digest: "sha256:2", MediaType: "m", Platforms: []LockedPlatform{{Platform: "linux/arm64", Digest: "sha256:4"}, {Platform: "linux/amd64", Digest: "sha256:3"}}},
			{Ref: "a", Digest: "sha256:1", MediaType: "m"},
		},
		Sources: []LockedSource{{Kind: "os_image", Name: "z", Source: "s", SHA256: "h"}, {Kind: "file", Name: "y", Source: "s", SHA256: "h"}},
	}
	one, err := l.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// The same pins in another order give the same bytes.
	l.Containers[0], l.Containers[1] = l.Containers[1], l.Containers[0]
	l.Sources[0], l.Sources[1] = l.Sources[1], l.Sources[0]
	two, _ := l.Marshal()
	if !bytes.Equal(one, two) {
		t.Errorf("Marshal depends on order:\n%s\n---\n%s", one, two)
	}
	p := t.TempDir() + "/build.lock"
	if err := os.WriteFile(p, one, 0o644); err != nil {
		t.Fatal(err)
	}
	back, err := ReadLock(p)
	if err != nil {
		t.Fatal(err)
	}
	if back.Containers[0].Ref != "a" || back.Containers[1].Platforms[0].Platform != "linux/amd64" || back.Sources[0].Kind != "file" {
		t.Errorf("lock read back as %+v", back)
	}
}

func TestReadLockErrors(t *testing.T) {
	p := t.TempDir() + "/build.lock"
	if err := os.WriteFile(p, []byte("version = 1\n[[container]]\nref = \"x\"\ndigest = 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ReadLock(p)
	var errs tomlpos.Errors
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("build.lock:4:10: container[0].digest: expected a string")) {
		t.Errorf("ReadLock() = %v (%T), want positioned errors", err, errs)
	}
}
