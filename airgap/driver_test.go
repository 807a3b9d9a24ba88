package airgap

import (
	"context"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/testsuites"
)

// TestLayeredDriverSuite runs distribution's own storage driver conformance suite against the
// layered driver (over an empty lower layer, since the suite writes and deletes everything).
func TestLayeredDriverSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("distribution's driver suite takes about 20s (it waits out mtime granularity); it runs without -short")
	}
	// Without -short the suite also streams a 5 GiB file through the driver, which says
	// nothing more about layering and takes minutes; the suite reads the flag per test.
	must(t, flag.Set("test.short", "true"))
	t.Cleanup(func() { _ = flag.Set("test.short", "false") })
	upper, lower := t.TempDir(), t.TempDir()
	testsuites.Driver(t, func() (storagedriver.StorageDriver, error) {
		return &layeredDriver{upper: fsDriver(upper), lower: readOnlyDriver{fsDriver(lower)}}, nil
	}, false)
}

func TestLayeredDriver(t *testing.T) {
	ctx := context.Background()
	lowerDir, upperDir := t.TempDir(), t.TempDir()
	lowerRW := fsDriver(lowerDir)
	must(t, lowerRW.PutContent(ctx, "/a/lower-only", []byte("L")))
	must(t, lowerRW.PutContent(ctx, "/a/both", []byte("L")))
	upper := fsDriver(upperDir)
	must(t, upper.PutContent(ctx, "/a/both", []byte("U")))
	must(t, upper.PutContent(ctx, "/a/upper-only", []byte("U")))
	d := &layeredDriver{upper: upper, lower: readOnlyDriver{fsDriver(lowerDir)}}

	for _, tc := range []struct {
		path, want string
	}{
		{"/a/lower-only", "L"},
		{"/a/both", "L"}, // the medium wins
		{"/a/upper-only", "U"},
	} {
		b, err := d.GetContent(ctx, tc.path)
		if err != nil || string(b) != tc.want {
			t.Errorf("GetContent(%q) = %q, %v; want %q", tc.path, b, err, tc.want)
		}
		r, err := d.Reader(ctx, tc.path, 0)
		must(t, err)
		b, err = io.ReadAll(r)
		r.Close()
		if err != nil || string(b) != tc.want {
			t.Errorf("Reader(%q) = %q, %v; want %q", tc.path, b, err, tc.want)
		}
	}
	list, err := d.List(ctx, "/a")
	must(t, err)
	if got := strings.Join(list, " "); got != "/a/both /a/lower-only /a/upper-only" {
		t.Errorf("List(/a) = %s, want both layers merged", got)
	}
	if _, err := d.Stat(ctx, "/nowhere"); !notFound(err) {
		t.Errorf("Stat(/nowhere) = %v, want PathNotFoundError", err)
	}
	if _, err := d.List(ctx, "/nowhere"); !notFound(err) {
		t.Errorf("List(/nowhere) = %v, want PathNotFoundError", err)
	}
	// Writes land in upper; lower stays as it was, and still wins.
	must(t, d.PutContent(ctx, "/a/lower-only", []byte("new")))
	if b, _ := lowerRW.GetContent(ctx, "/a/lower-only"); string(b) != "L" {
		t.Errorf("lower changed to %q after a write through the layered driver", b)
	}
	if b, _ := d.GetContent(ctx, "/a/lower-only"); string(b) != "L" {
		t.Errorf("GetContent(/a/lower-only) = %q after a write to upper, want lower's", b)
	}
	if err := d.Delete(ctx, "/a/both"); !errors.Is(err, errReadOnly) && !strings.Contains(err.Error(), errReadOnly.Error()) {
		t.Errorf("Delete(/a/both) = %v, want a read-only refusal for the lower copy", err)
	}
	if err := (readOnlyDriver{lowerRW}).PutContent(ctx, "/x", nil); err == nil {
		t.Error("readOnlyDriver.PutContent succeeded, want a refusal")
	}
}

// TestLayeredDriverTags holds a tag in both layers, as an upper store that tries to shadow the
// medium would: the tag's link and index come from lower alone, a tag only upper holds comes
// from upper, and the list of tags has each once.
func TestLayeredDriverTags(t *testing.T) {
	ctx := context.Background()
	lowerDir, upperDir := t.TempDir(), t.TempDir()
	const tags = "/docker/registry/v2/repositories/docker.io/library/nginx/_manifests/tags"
	lowerRW, upper := fsDriver(lowerDir), fsDriver(upperDir)
	must(t, lowerRW.PutContent(ctx, tags+"/1.27/current/link", []byte("sha256:low")))
	must(t, lowerRW.PutContent(ctx, tags+"/1.27/index/sha256/low/link", []byte("sha256:low")))
	must(t, upper.PutContent(ctx, tags+"/1.27/current/link", []byte("sha256:up")))
	must(t, upper.PutContent(ctx, tags+"/1.27/index/sha256/up/link", []byte("sha256:up")))
	must(t, upper.PutContent(ctx, tags+"/hotfix/current/link", []byte("sha256:fix")))
	d := &layeredDriver{upper: readOnlyDriver{upper}, lower: readOnlyDriver{fsDriver(lowerDir)}}

	for path, want := range map[string]string{
		tags + "/1.27/current/link":   "sha256:low",
		tags + "/hotfix/current/link": "sha256:fix",
	} {
		if b, err := d.GetContent(ctx, path); err != nil || string(b) != want {
			t.Errorf("GetContent(%q) = %q, %v; want %q", path, b, err, want)
		}
	}
	if _, err := d.Stat(ctx, tags+"/1.27/index/sha256/up/link"); !notFound(err) {
		t.Errorf("Stat of upper's index entry for lower's tag = %v, want PathNotFoundError", err)
	}
	if _, err := d.Reader(ctx, tags+"/1.27/index/sha256/up/link", 0); !notFound(err) {
		t.Errorf("Reader of upper's index entry for lower's tag = %v, want PathNotFoundError", err)
	}
	for path, want := range map[string]string{
		tags + "/1.27/index/sha256": tags + "/1.27/index/sha256/low",
		tags:                        tags + "/1.27 " + tags + "/hotfix",
	} {
		l, err := d.List(ctx, path)
		if got := strings.Join(l, " "); err != nil || got != want {
			t.Errorf("List(%q) = %s, %v; want %s", path, got, err, want)
		}
	}
}

func TestTagDir(t *testing.T) {
	const repo = "/docker/registry/v2/repositories/docker.io/library/nginx"
	for path, want := range map[string]string{
		repo + "/_manifests/tags/1.27/current/link":         repo + "/_manifests/tags/1.27",
		repo + "/_manifests/tags/1.27/index/sha256/ab/link": repo + "/_manifests/tags/1.27",
		repo + "/_manifests/tags/1.27":                      repo + "/_manifests/tags/1.27",
		repo + "/_manifests/tags":                           "",
		repo + "/_manifests/tags/":                          "",
		repo + "/_manifests/revisions/sha256/ab/link":       "",
		repo + "/_layers/sha256/ab/link":                    "",
		"/docker/registry/v2/blobs/sha256/ab/abcd/data":     "",
	} {
		if got := tagDir(path); got != want {
			t.Errorf("tagDir(%q) = %q, want %q", path, got, want)
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
