package airgap

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestResolveImage(t *testing.T) {
	d1 := digest.FromString("nginx 1.27")
	d2 := digest.FromString("nginx 1.28")
	medium := &Index{Version: IndexVersion, Artifacts: []Artifact{
		{Name: "docker.io/library/nginx:1.27", Kind: KindImage, Repository: "docker.io/library/nginx", Tag: "1.27", Digest: d1},
		{Name: "debian-12", Kind: KindOS, Repository: "os/debian-12", Tag: "latest", Digest: digest.FromString("os")},
	}}
	upper := &Index{Version: IndexVersion, Artifacts: []Artifact{
		{Name: "docker.io/library/nginx:1.28", Kind: KindImage, Repository: "docker.io/library/nginx", Tag: "1.28", Digest: d2},
	}}
	dirs := []string{t.TempDir(), t.TempDir()}
	for i, ix := range []*Index{medium, upper} {
		b, err := ix.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dirs[i], IndexFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := NewStores(dirs...)
	for _, tc := range []struct {
		repo, tag string
		dgst      digest.Digest
		want      digest.Digest
	}{
		{"docker.io/library/nginx", "1.27", "", d1},
		{"docker.io/library/nginx", "1.28", "", d2}, // from the upper store
		{"docker.io/library/nginx", "", d2, d2},
		{"docker.io/library/nginx", "1.27", d2, d2}, // the digest decides
	} {
		a, err := s.ResolveImage(tc.repo, tc.tag, tc.dgst)
		if err != nil || a.Digest != tc.want {
			t.Errorf("ResolveImage(%s, %s, %s) = %s, %v; want %s", tc.repo, tc.tag, tc.dgst, a.Digest, err, tc.want)
		}
	}
	// Controls: a tag the store lacks names what it has; an OS image is no container image.
	_, err := s.ResolveImage("docker.io/library/nginx", "1.29", "")
	if !errors.Is(err, ErrNoArtifact) || !strings.Contains(err.Error(), "docker.io/library/nginx:1.27 ("+d1.String()+")") {
		t.Errorf("missing tag: %v", err)
	}
	if _, err := s.ResolveImage("os/debian-12", "latest", ""); !errors.Is(err, ErrNoArtifact) || !strings.Contains(err.Error(), "nor is any image") {
		t.Errorf("an OS image resolved as a container image: %v", err)
	}
}
