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
		{"/a/both", "U"},
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
	// Writes land in upper; lower stays as it was.
	must(t, d.PutContent(ctx, "/a/lower-only", []byte("new")))
	if b, _ := lowerRW.GetContent(ctx, "/a/lower-only"); string(b) != "L" {
		t.Errorf("lower changed to %q after a write through the layered driver", b)
	}
	if err := d.Delete(ctx, "/a/both"); !errors.Is(err, errReadOnly) && !strings.Contains(err.Error(), errReadOnly.Error()) {
		t.Errorf("Delete(/a/both) = %v, want a read-only refusal for the lower copy", err)
	}
	if err := (readOnlyDriver{lowerRW}).PutContent(ctx, "/x", nil); err == nil {
		t.Error("readOnlyDriver.PutContent succeeded, want a refusal")
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
