package airgap_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-appliance/cairn/airgap"
)

func blobPath(dir, dgst string) string {
	hexd := strings.TrimPrefix(dgst, "sha256:")
	return filepath.Join(dir, "docker/registry/v2/blobs/sha256", hexd[:2], hexd, "data")
}

// layerOf returns the digest of the first layer of the artifact in repo.
func layerOf(t *testing.T, f *fixture, name string) string {
	t.Helper()
	m, err := f.images[name].Manifest()
	must(t, err)
	return m.Layers[0].Digest.String()
}

// editIndex changes the artifact in repo in bundle.json without signing it again.
func editIndex(edit func(*airgap.Artifact), repo string) func(*testing.T, string) {
	return func(t *testing.T, dir string) {
		ix, _, err := airgap.ReadIndex(dir)
		must(t, err)
		found := false
		for i := range ix.Artifacts {
			if ix.Artifacts[i].Repository == repo {
				edit(&ix.Artifacts[i])
				found = true
			}
		}
		if !found {
			t.Fatalf("no artifact in %s", repo)
		}
		b, err := ix.Marshal()
		must(t, err)
		must(t, os.WriteFile(filepath.Join(dir, airgap.IndexFile), b, 0o644))
	}
}

func TestVerify(t *testing.T) {
	f := newFixture(t)
	priv, pub := newKey(t)
	_, otherPub := newKey(t)
	app := "registry.example.com/team/app:1.0"
	appLayer := layerOf(t, f, app)
	nginxLayer := layerOf(t, f, "nginx:1.27")

	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, dir string)
		key    []byte
		want   []string // substrings of the error; none means Verify must pass
	}{
		{name: "untouched"},
		{
			name: "one byte flipped in a blob",
			tamper: func(t *testing.T, dir string) {
				p := blobPath(dir, appLayer)
				b, err := os.ReadFile(p)
				must(t, err)
				b[len(b)/2] ^= 0x01
				must(t, os.WriteFile(p, b, 0o644))
			},
			want: []string{app, appLayer, "hashes to"},
		},
		{
			name: "blob deleted",
			tamper: func(t *testing.T, dir string) {
				must(t, os.RemoveAll(filepath.Dir(blobPath(dir, nginxLayer))))
			},
			want: []string{"docker.io/library/nginx:1.27", nginxLayer, "missing"},
		},
		{
			name: "bundle.json edited",
			tamper: func(t *testing.T, dir string) {
				p := filepath.Join(dir, airgap.IndexFile)
				b, err := os.ReadFile(p)
				must(t, err)
				b = []byte(strings.Replace(string(b), `"tag":"1.0"`, `"tag":"1.1"`, 1))
				must(t, os.WriteFile(p, b, 0o644))
			},
			want: []string{"bundle.json", "signature", "registry.example.com/team/app:1.1", `tag "1.1" is missing`},
		},
		{
			name:   "bundle.json edited: kind",
			tamper: editIndex(func(a *airgap.Artifact) { a.Kind = airgap.KindFile }, "netboot/debian-12/vmlinuz"),
			want:   []string{"bundle.json", "signature", "netboot/debian-12/vmlinuz:6.1", "belongs in repository files/debian-12/vmlinuz"},
		},
		{
			name:   "bundle.json edited: platforms",
			tamper: editIndex(func(a *airgap.Artifact) { a.Platforms = []string{"linux/amd64"} }, "registry.example.com/team/app"),
			want:   []string{"signature", "registry.example.com/team/app:1.0", "platforms [linux/arm64/v8], bundle.json says [linux/amd64]"},
		},
		{
			name:   "bundle.json edited: size",
			tamper: editIndex(func(a *airgap.Artifact) { a.Size-- }, "docker.io/library/busybox"),
			want:   []string{"signature", "docker.io/library/busybox:1.36", "bundle.json says"},
		},
		{
			name:   "bundle.json edited: media type",
			tamper: editIndex(func(a *airgap.Artifact) { a.MediaType = "application/vnd.oci.image.index.v1+json" }, "docker.io/library/busybox"),
			want:   []string{"signature", "docker.io/library/busybox:1.36", `manifest has media type "application/vnd.docker.distribution.manifest.list.v2+json"`},
		},
		{
			name: "bundle.sig removed",
			tamper: func(t *testing.T, dir string) {
				must(t, os.Remove(filepath.Join(dir, airgap.SignatureFile)))
			},
			want: []string{"bundle.sig", "never sealed"},
		},
		{
			name: "tag moved",
			tamper: func(t *testing.T, dir string) {
				nginx, err := os.ReadFile(filepath.Join(dir, "docker/registry/v2/repositories/docker.io/library/nginx/_manifests/tags/1.27/current/link"))
				must(t, err)
				must(t, os.WriteFile(filepath.Join(dir, "docker/registry/v2/repositories/files/motd/_manifests/tags/latest/current/link"), nginx, 0o644))
			},
			want: []string{"files/motd:latest", `tag "latest" in repository files/motd points at`},
		},
		{
			name: "stray blob",
			tamper: func(t *testing.T, dir string) {
				p := blobPath(dir, "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae")
				must(t, os.MkdirAll(filepath.Dir(p), 0o755))
				must(t, os.WriteFile(p, []byte("foo"), 0o644))
			},
			want: []string{"(no artifact)", "no artifact in bundle.json references it"},
		},
		{
			// A re-signed bundle.json that lies about an OS image still disagrees with its manifest.
			name: "OS image record re-signed with other values",
			tamper: func(t *testing.T, dir string) {
				ix, _, err := airgap.ReadIndex(dir)
				must(t, err)
				for i := range ix.Artifacts {
					if ix.Artifacts[i].OS != nil {
						ix.Artifacts[i].OS.UncompressedSize++
					}
				}
				b, err := ix.Marshal()
				must(t, err)
				must(t, os.WriteFile(filepath.Join(dir, airgap.IndexFile), b, 0o644))
				must(t, os.WriteFile(filepath.Join(dir, airgap.SignatureFile), ed25519.Sign(priv, b), 0o644))
			},
			want: []string{"os/debian-12:20261101", "dev.cairn.os.uncompressed.size"},
		},
		{name: "another key", key: otherPub, want: []string{"bundle.json", "signed with another key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeStore(t, f, dir, priv, nil)
			if tc.tamper != nil {
				tc.tamper(t, dir)
			}
			key := pub
			if tc.key != nil {
				key = tc.key
			}
			rep, err := airgap.Verify(context.Background(), dir, key)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Verify(untouched store) = %v, want nil", err)
				}
				if rep.Blobs == 0 || rep.Bytes == 0 || len(rep.Index.Artifacts) != 7 {
					t.Errorf("Verify report = %+v, want blobs, bytes and 7 artifacts", rep)
				}
				return
			}
			var verr *airgap.VerifyError
			if !errors.As(err, &verr) {
				t.Fatalf("Verify = %v, want a *VerifyError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Verify error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}
