package airgap_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestRegistryCatalog lists the repositories of a store alone and of a store with an upper store
// that shares one repository with it: merged, each once, in distribution's order (by path
// component), across pages too.
func TestRegistryCatalog(t *testing.T) {
	f := newFixture(t)
	lower := t.TempDir()
	ix := writeStore(t, f, lower, newKeyOnly(t), nil)
	var medium []string
	for _, a := range ix.Artifacts {
		if !slices.Contains(medium, a.Repository) {
			medium = append(medium, a.Repository)
		}
	}
	upper := t.TempDir()
	writeUpper(t, upper, map[string]v1.Image{
		"docker.io/library/nginx:hotfix": randomImage(t), // a repository the medium holds too
		"example.org/later/added:1":      randomImage(t),
		"example.org/zzz:1":              randomImage(t),
	})
	byComponent := func(s []string) []string {
		s = slices.Clone(s)
		slices.SortFunc(s, func(a, b string) int {
			return strings.Compare(strings.ReplaceAll(a, "/", "\x00"), strings.ReplaceAll(b, "/", "\x00"))
		})
		return s
	}

	for _, tc := range []struct {
		name  string
		upper string
		want  []string
	}{
		{"medium only", "", byComponent(medium)},
		{"medium and upper", upper, byComponent(append(slices.Clone(medium), "example.org/later/added", "example.org/zzz"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.want) < 7 {
				t.Fatalf("the fixture has %d repositories, want at least 7", len(tc.want))
			}
			host := serve(t, lower, tc.upper)
			resp, err := http.Get("http://" + host + "/v2/_catalog")
			must(t, err)
			var doc struct{ Repositories []string }
			err = json.NewDecoder(resp.Body).Decode(&doc)
			resp.Body.Close()
			must(t, err)
			if resp.StatusCode != http.StatusOK || !slices.Equal(doc.Repositories, tc.want) {
				t.Errorf("GET /v2/_catalog = %d %v, want 200 %v", resp.StatusCode, doc.Repositories, tc.want)
			}

			// Two at a time, following the Link header, gives the same list.
			reg, err := name.NewRegistry(host, name.Insecure)
			must(t, err)
			var paged []string
			last := ""
			for range len(tc.want) {
				page, err := remote.CatalogPage(reg, last, 2)
				must(t, err)
				if len(page) == 0 {
					break
				}
				paged = append(paged, page...)
				last = page[len(page)-1]
			}
			if !slices.Equal(paged, tc.want) {
				t.Errorf("the catalog two at a time = %v, want %v", paged, tc.want)
			}
		})
	}
}

// catalog returns every repository /v2/_catalog lists, following its pages.
func catalog(t testing.TB, host string) []string {
	t.Helper()
	reg, err := name.NewRegistry(host, name.Insecure)
	must(t, err)
	repos, err := remote.Catalog(context.Background(), reg)
	must(t, err)
	return repos
}
