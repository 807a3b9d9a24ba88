package airgap_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/cairn-appliance/cairn/airgap/airgaptest"
)

// wantRefused checks that err is the registry's refusal of a write: a 405 or 403 carrying the
// OCI error code UNSUPPORTED or DENIED.
func wantRefused(t *testing.T, what string, err error) {
	t.Helper()
	var terr *transport.Error
	if !errors.As(err, &terr) {
		t.Errorf("%s = %v, want a refusal from the registry", what, err)
		return
	}
	if terr.StatusCode != http.StatusMethodNotAllowed && terr.StatusCode != http.StatusForbidden {
		t.Errorf("%s: status %d, want 405 or 403 (%v)", what, terr.StatusCode, err)
	}
	if !slices.ContainsFunc(terr.Errors, func(d transport.Diagnostic) bool {
		return d.Code == transport.UnsupportedErrorCode || d.Code == transport.DeniedErrorCode
	}) {
		t.Errorf("%s: error codes %v, want UNSUPPORTED or DENIED (%v)", what, terr.Errors, err)
	}
}

// clientWrite is one way a client changes a registry. Each runs against the appliance's registry,
// where it must be refused, and against a writable registry, where it must succeed, so that a
// refusal is told apart from a push that is broken anyway.
type clientWrite struct {
	name string
	do   func(t *testing.T, host string) error
}

func ggcrWrites(medium v1.Hash) []clientWrite {
	repo := strings.TrimSuffix(mediumTag, ":1.27-alpine")
	return []clientWrite{
		{"push of another image to the medium's tag", func(t *testing.T, host string) error {
			return remote.Write(ref(t, host, mediumTag), randomImage(t))
		}},
		{"push to a new name", func(t *testing.T, host string) error {
			return remote.Write(ref(t, host, "evil/pushed:1"), randomImage(t))
		}},
		{"push of an index to a new name", func(t *testing.T, host string) error {
			idx, err := random.Index(512, 1, 2)
			must(t, err)
			return remote.WriteIndex(ref(t, host, "evil/index:1"), idx)
		}},
		{"new tag for the medium's image (manifest PUT only)", func(t *testing.T, host string) error {
			desc, err := remote.Get(ref(t, host, mediumTag))
			must(t, err)
			return remote.Tag(ref(t, host, repo+":evil").(name.Tag), desc)
		}},
		{"delete of the medium's manifest", func(t *testing.T, host string) error {
			return remote.Delete(ref(t, host, repo+"@"+medium.String()))
		}},
		{"delete of the medium's tag", func(t *testing.T, host string) error {
			return remote.Delete(ref(t, host, mediumTag))
		}},
	}
}

// skopeoWrites pushes with the real skopeo, from an OCI layout written with go-containerregistry.
func skopeoWrites(t *testing.T, medium v1.Hash) []clientWrite {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Log("skopeo is not installed, so pushes with it are not tried; scripts/deps.sh installs it (apt-get install skopeo)")
		return nil
	}
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.json")
	must(t, os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644))
	oci := filepath.Join(dir, "oci")
	p, err := layout.Write(oci, empty.Index)
	must(t, err)
	// containers/image finds only OCI manifests in an OCI layout.
	img, err := mutate.AppendLayers(mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON), randomLayer(t), randomLayer(t))
	must(t, err)
	must(t, p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "pushme"})))
	run := func(args ...string) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, skopeo, append([]string{"--policy", policy}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("skopeo %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	repo := strings.TrimSuffix(mediumTag, ":1.27-alpine")
	return []clientWrite{
		{"skopeo copy to the medium's tag", func(t *testing.T, host string) error {
			return run("copy", "--dest-tls-verify=false", "oci:"+oci+":pushme", "docker://"+host+"/"+mediumTag)
		}},
		{"skopeo copy to a new name", func(t *testing.T, host string) error {
			return run("copy", "--dest-tls-verify=false", "oci:"+oci+":pushme", "docker://"+host+"/evil/pushed:1")
		}},
		{"skopeo delete of the medium's manifest", func(t *testing.T, host string) error {
			return run("delete", "--tls-verify=false", "docker://"+host+"/"+repo+"@"+medium.String())
		}},
	}
}

// wantSkopeoRefused checks skopeo's report of a refusal: it exits non-zero naming the OCI
// error, which containers/image words as "unsupported: The operation is unsupported." (or
// "denied: ...") or quotes as the registry's JSON.
func wantSkopeoRefused(t *testing.T, what string, err error) {
	t.Helper()
	// skopeo quotes the registry's JSON with its quotes escaped.
	msg := strings.ReplaceAll(strings.ToLower(fmt.Sprint(err)), `\"`, `"`)
	named := false
	for _, s := range []string{"unsupported: the operation is unsupported", `"code":"unsupported"`, "denied: ", `"code":"denied"`} {
		named = named || strings.Contains(msg, s)
	}
	if err == nil || !named {
		t.Errorf("%s = %v, want a refusal naming UNSUPPORTED or DENIED", what, err)
	}
	if strings.Contains(msg, "500") || strings.Contains(msg, "internal server error") {
		t.Errorf("%s: the registry answered 500: %v", what, err)
	}
}

// TestRegistryRefusesWrites serves the registry as the appliance does, with and without an
// upper store, and tries every way a client writes: each is refused with 405 UNSUPPORTED, the
// medium's tag still serves the medium's manifest, and neither store changes.
func TestRegistryRefusesWrites(t *testing.T) {
	lower := t.TempDir()
	medium := airgaptest.SealedStore(t, lower, mediumTag)
	upperStore := t.TempDir()
	writeUpper(t, upperStore, map[string]v1.Image{"example.org/later/added:1": randomImage(t)})

	ggcr, skopeo := ggcrWrites(medium), skopeoWrites(t, medium)

	// The control: a writable registry takes every one of these writes.
	t.Run("control", func(t *testing.T) {
		srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
		t.Cleanup(srv.Close)
		host := strings.TrimPrefix(srv.URL, "http://")
		img, err := remote.Image(ref(t, serve(t, lower, ""), mediumTag))
		must(t, err)
		for _, w := range append(ggcr, skopeo...) {
			// Each write starts from the medium's image under its tag.
			must(t, remote.Write(ref(t, host, mediumTag), img))
			if err := w.do(t, host); err != nil {
				t.Errorf("%s on a writable registry: %v", w.name, err)
			}
		}
	})

	for _, tc := range []struct {
		name  string
		upper string
	}{
		{"medium only", ""},
		{"medium and missing upper", filepath.Join(t.TempDir(), "upper")},
		{"medium and upper store", upperStore},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lowerBefore := treeSums(t, lower)
			var upperBefore map[string]string
			if tc.upper != "" {
				if _, err := os.Stat(tc.upper); err == nil {
					upperBefore = treeSums(t, tc.upper)
				}
			}
			host := serve(t, lower, tc.upper)
			wantRepos := []string{"docker.io/library/nginx"}
			if tc.upper == upperStore {
				wantRepos = append(wantRepos, "example.org/later/added")
			}

			for _, w := range ggcr {
				wantRefused(t, w.name, w.do(t, host))
			}
			for _, w := range skopeo {
				wantSkopeoRefused(t, w.name, w.do(t, host))
			}
			for _, r := range rawWrites(medium) {
				r.check(t, "http://"+host)
			}

			if got := digestOf(t, host, mediumTag); got != medium {
				t.Errorf("after the writes %s serves %s, want the medium's %s", mediumTag, got, medium)
			}
			if _, err := remote.Head(ref(t, host, "evil/pushed:1")); err == nil {
				t.Error("evil/pushed:1 is served after the refused pushes")
			}
			if got := catalog(t, host); !slices.Equal(got, wantRepos) {
				t.Errorf("catalog after the writes = %v, want %v", got, wantRepos)
			}
			sameTree(t, "the medium", lowerBefore, treeSums(t, lower))
			switch {
			case tc.upper == "":
			case upperBefore == nil:
				if _, err := os.Stat(tc.upper); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the registry made the missing upper store %s (stat: %v)", tc.upper, err)
				}
			default:
				sameTree(t, "the upper store", upperBefore, treeSums(t, tc.upper))
			}
		})
	}
}

// rawWrite is one write request as the API spells it, for the paths no client above reaches
// on its own (an upload session's PATCH and PUT, a mount, a blob DELETE).
type rawWrite struct {
	method, path string
}

func rawWrites(medium v1.Hash) []rawWrite {
	repo := "/v2/docker.io/library/nginx"
	upload := repo + "/blobs/uploads/0b5e3b3e-2a4c-4b5e-9b9a-1c2d3e4f5a6b"
	zero := "sha256:" + strings.Repeat("0", 64)
	return []rawWrite{
		{http.MethodPost, repo + "/blobs/uploads/"},
		{http.MethodPost, repo + "/blobs/uploads/?digest=" + zero},                                         // monolithic
		{http.MethodPost, "/v2/evil/pushed/blobs/uploads/?mount=" + medium.String() + "&from=" + repo[4:]}, // cross-repository mount
		{http.MethodPatch, upload},
		{http.MethodPut, upload + "?digest=" + zero},
		{http.MethodDelete, upload},
		{http.MethodPut, repo + "/manifests/1.27-alpine"},
		{http.MethodPut, "/v2/evil/pushed/manifests/1"},
		{http.MethodDelete, repo + "/manifests/1.27-alpine"},
		{http.MethodDelete, repo + "/manifests/" + medium.String()},
		{http.MethodDelete, repo + "/blobs/" + medium.String()},
		{http.MethodDelete, repo + "/tags/1.27-alpine"},
		{http.MethodDelete, "/v2/docker.io/library/nginx"},
	}
}

func (r rawWrite) check(t *testing.T, base string) {
	t.Helper()
	req, err := http.NewRequest(r.method, base+r.path, strings.NewReader(`{"schemaVersion":2}`))
	must(t, err)
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	must(t, err)
	var doc struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	_ = json.Unmarshal(body, &doc)
	if resp.StatusCode != http.StatusMethodNotAllowed || len(doc.Errors) != 1 || doc.Errors[0].Code != "UNSUPPORTED" {
		t.Errorf("%s %s = %d %s, want 405 with the OCI error UNSUPPORTED", r.method, r.path, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	if got := resp.Header.Get("Allow"); got != "GET, HEAD" {
		t.Errorf("%s %s: Allow: %q, want \"GET, HEAD\"", r.method, r.path, got)
	}
}

func sameTree(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for p, s := range after {
		if before[p] != s {
			t.Errorf("%s changed at %s", what, p)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("%s lost %s", what, p)
		}
	}
}
