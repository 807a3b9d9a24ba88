package airgap_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/cairn-appliance/cairn/airgap"
)

// serve starts a registry over the store in dir (and upper, if given) on loopback.
func serve(t testing.TB, dir, upper string) string {
	t.Helper()
	h, err := airgap.NewRegistry(airgap.RegistryConfig{Dir: dir, UpperDir: upper})
	must(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// pullAll pulls every artifact of ix from host with go-containerregistry and checks each digest
// and, for images, every layer's content.
func pullAll(t *testing.T, host string, ix *airgap.Index) {
	t.Helper()
	for _, a := range ix.Artifacts {
		ref, err := name.ParseReference(host+"/"+a.Ref(), name.Insecure)
		must(t, err)
		desc, err := remote.Get(ref)
		if err != nil {
			t.Errorf("pulling %s: %v", a.Ref(), err)
			continue
		}
		if desc.Digest.String() != a.Digest.String() {
			t.Errorf("pulled %s with digest %s, want %s", a.Ref(), desc.Digest, a.Digest)
		}
		switch {
		case desc.MediaType.IsIndex():
			idx, err := desc.ImageIndex()
			must(t, err)
			if err := validate.Index(idx); err != nil {
				t.Errorf("index %s does not validate: %v", a.Ref(), err)
			}
		default:
			img, err := desc.Image()
			must(t, err)
			if a.Kind == airgap.KindImage {
				if err := validate.Image(img); err != nil {
					t.Errorf("image %s does not validate: %v", a.Ref(), err)
				}
				continue
			}
			m, err := img.Manifest()
			must(t, err)
			for _, l := range m.Layers {
				layer, err := img.LayerByDigest(l.Digest)
				must(t, err)
				rc, err := layer.Compressed()
				must(t, err)
				h := sha256.New()
				n, err := io.Copy(h, rc)
				rc.Close()
				must(t, err)
				if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != l.Digest.String() || n != l.Size {
					t.Errorf("%s layer %s: got %s, %d bytes; want %d bytes", a.Ref(), l.Digest, got, n, l.Size)
				}
			}
		}
	}
}

// pushRefused checks that pushing to host is refused with 405 UNSUPPORTED (or 403 DENIED).
func pushRefused(t *testing.T, host string) {
	t.Helper()
	img, err := random.Image(512, 1)
	must(t, err)
	ref, err := name.ParseReference(host+"/intruder/image:1", name.Insecure)
	must(t, err)
	wantRefused(t, "push to the read-only registry", remote.Write(ref, img))
}

func TestRegistryServesStore(t *testing.T) {
	f := newFixture(t)
	priv, _ := newKey(t)
	dir := t.TempDir()
	ix := writeStore(t, f, dir, priv, nil)
	host := serve(t, dir, "")
	pullAll(t, host, ix)
	pushRefused(t, host)
}

func TestRegistryRange(t *testing.T) {
	f := newFixture(t)
	priv, _ := newKey(t)
	dir := t.TempDir()
	writeStore(t, f, dir, priv, nil)
	host := serve(t, dir, "")

	// The OS image's layer is the blob agents resume.
	ref, err := name.ParseReference(host+"/os/debian-12:20261101", name.Insecure)
	must(t, err)
	img, err := remote.Image(ref)
	must(t, err)
	m, err := img.Manifest()
	must(t, err)
	layer := m.Layers[0]
	whole, err := os.ReadFile(f.os.Path)
	must(t, err)
	if len(whole) < 2000 {
		t.Fatalf("fixture OS image is %d bytes, need at least 2000", len(whole))
	}
	url := fmt.Sprintf("http://%s/v2/os/debian-12/blobs/%s", host, layer.Digest)
	for _, tc := range []struct {
		rng        string
		wantStatus int
		want       []byte
	}{
		{"bytes=1000-1999", http.StatusPartialContent, whole[1000:2000]},
		{fmt.Sprintf("bytes=%d-", len(whole)-10), http.StatusPartialContent, whole[len(whole)-10:]},
		{"", http.StatusOK, whole},
		{fmt.Sprintf("bytes=%d-", len(whole)+10), http.StatusRequestedRangeNotSatisfiable, nil},
	} {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		must(t, err)
		if tc.rng != "" {
			req.Header.Set("Range", tc.rng)
		}
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		must(t, err)
		if resp.StatusCode != tc.wantStatus {
			t.Errorf("GET Range %q = %d, want %d", tc.rng, resp.StatusCode, tc.wantStatus)
			continue
		}
		if tc.want != nil && !bytes.Equal(body, tc.want) {
			t.Errorf("GET Range %q returned %d bytes that differ from the blob's", tc.rng, len(body))
		}
	}
}

// TestRegistryUpper serves a store with an upper store that cairn wrote beside it: a new
// repository, a new tag in a repository of the medium, and a second tag for an image of the
// medium. The registry serves all of it and the medium's content, and still refuses pushes.
func TestRegistryUpper(t *testing.T) {
	f := newFixture(t)
	priv, _ := newKey(t)
	lower, upper := t.TempDir(), t.TempDir()
	ix := writeStore(t, f, lower, priv, nil)
	added, hotfix := randomImage(t), randomImage(t)
	writeUpper(t, upper, map[string]v1.Image{
		"example.org/later/added:1":            added,
		"docker.io/library/nginx:hotfix":       hotfix,
		"registry.example.com/team/app:stable": f.images["registry.example.com/team/app:1.0"],
	})
	lowerBefore, upperBefore := treeSums(t, lower), treeSums(t, upper)
	host := serve(t, lower, upper)

	// Everything in lower is still there.
	pullAll(t, host, ix)

	for r, want := range map[string]v1.Image{
		"example.org/later/added:1":            added,
		"docker.io/library/nginx:hotfix":       hotfix,
		"registry.example.com/team/app:stable": f.images["registry.example.com/team/app:1.0"],
	} {
		got, err := remote.Image(ref(t, host, r))
		must(t, err)
		if err := validate.Image(got); err != nil {
			t.Errorf("%s from upper does not validate: %v", r, err)
		}
		gd, err := got.Digest()
		must(t, err)
		wd, err := want.Digest()
		must(t, err)
		if gd != wd {
			t.Errorf("%s = %s, want %s", r, gd, wd)
		}
	}
	tags, err := remote.List(ref(t, host, "registry.example.com/team/app:1.0").Context())
	must(t, err)
	if strings.Join(tags, ",") != "1.0,stable" {
		t.Errorf("tags of team/app = %v, want [1.0 stable]", tags)
	}
	pushRefused(t, host)
	sameTree(t, "the medium", lowerBefore, treeSums(t, lower))
	sameTree(t, "the upper store", upperBefore, treeSums(t, upper))
}

func TestNewRegistryRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  airgap.RegistryConfig
		want string
	}{
		{"no dir", airgap.RegistryConfig{}, "no store directory"},
		{"not a store", airgap.RegistryConfig{Dir: t.TempDir()}, "holds no store"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := airgap.NewRegistry(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewRegistry(%+v) = %v, want an error containing %q", tc.cfg, err, tc.want)
			}
		})
	}
}

// readOnlyMount mounts dir read-only at a new directory and returns it: as a read-only bind
// mount, or packed into a squashfs image and loop-mounted, the way the appliance boots.
func readOnlyMount(t *testing.T, dir, kind string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("serving from a read-only mount needs root (for mount); run the tests as root, e.g. sudo go test ./airgap/")
	}
	mnt := t.TempDir()
	var mount [][]string
	switch kind {
	case "bind":
		mount = [][]string{{"mount", "--bind", dir, mnt}, {"mount", "-o", "remount,bind,ro", mnt}}
	case "squashfs":
		if _, err := exec.LookPath("mksquashfs"); err != nil {
			t.Skip("mksquashfs is not installed; apt-get install squashfs-tools")
		}
		img := filepath.Join(t.TempDir(), "store.sqfs")
		if out, err := exec.Command("mksquashfs", dir, img, "-noappend", "-quiet", "-no-progress").CombinedOutput(); err != nil {
			t.Fatalf("mksquashfs: %v: %s", err, out)
		}
		mount = [][]string{{"mount", "-t", "squashfs", "-o", "loop,ro", img, mnt}}
	}
	for i, args := range mount {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil && i == 0 {
			t.Skipf("%s is not available here: %v: %s", strings.Join(args, " "), err, out)
		}
		if err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
		if i == 0 {
			t.Cleanup(func() {
				if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
					t.Errorf("umount %s: %v: %s", mnt, err, out)
				}
			})
		}
	}
	if err := os.WriteFile(filepath.Join(mnt, "probe"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("writing into the read-only mount = %v, want EROFS", err)
	}
	return mnt
}

// TestReadOnlyMediumTwoClients is the appliance's case: the store on a read-only filesystem,
// served in place, pulled by go-containerregistry and by skopeo.
func TestReadOnlyMediumTwoClients(t *testing.T) {
	f := newFixture(t)
	priv, pub := newKey(t)
	dir := t.TempDir()
	ix := writeStore(t, f, dir, priv, nil)
	for _, kind := range []string{"bind", "squashfs"} {
		t.Run(kind, func(t *testing.T) { pullFromMedium(t, dir, kind, ix, pub) })
	}
}

func pullFromMedium(t *testing.T, dir, kind string, ix *airgap.Index, pub ed25519.PublicKey) {
	mnt := readOnlyMount(t, dir, kind)

	if _, err := airgap.Verify(context.Background(), mnt, pub); err != nil {
		t.Fatalf("Verify on the read-only mount: %v", err)
	}
	host := serve(t, mnt, "")
	pullAll(t, host, ix)
	pushRefused(t, host)

	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Skip("skopeo is not installed; scripts/deps.sh installs it (apt-get install skopeo)")
	}
	policy := write(t, t.TempDir(), "policy.json", []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`))
	for _, a := range ix.Artifacts {
		t.Run(a.Ref(), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "img")
			cmd := exec.Command(skopeo, "--policy", policy, "copy", "--all", "--preserve-digests",
				"--src-tls-verify=false", "docker://"+host+"/"+a.Ref(), "dir:"+out)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("skopeo copy %s: %v\n%s", a.Ref(), err, b)
			}
			m, err := os.ReadFile(filepath.Join(out, "manifest.json"))
			must(t, err)
			sum := sha256.Sum256(m)
			if got := "sha256:" + hex.EncodeToString(sum[:]); got != a.Digest.String() {
				t.Errorf("skopeo copied %s with manifest digest %s, want %s", a.Ref(), got, a.Digest)
			}
			var doc struct {
				Layers []struct{ Digest string } `json:"layers"`
			}
			must(t, json.Unmarshal(m, &doc))
			for _, l := range doc.Layers {
				b, err := os.ReadFile(filepath.Join(out, strings.TrimPrefix(l.Digest, "sha256:")))
				must(t, err)
				s := sha256.Sum256(b)
				if got := "sha256:" + hex.EncodeToString(s[:]); got != l.Digest {
					t.Errorf("skopeo copied layer %s of %s with content %s", l.Digest, a.Ref(), got)
				}
			}
		})
	}
}
