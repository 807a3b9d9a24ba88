package airgap

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sort"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// errReadOnly is the detail of every write refused by a read-only driver.
var errReadOnly = errors.New("the store is read-only")

// readOnlyDriver serves a store and refuses every write, so that nothing the registry does can
// change the medium, whatever the registry's own configuration says.
type readOnlyDriver struct {
	storagedriver.StorageDriver
}

func (d readOnlyDriver) refuse() error {
	return storagedriver.Error{DriverName: d.Name(), Detail: errReadOnly}
}

func (d readOnlyDriver) Name() string { return "cairn-readonly" }

func (d readOnlyDriver) GetContent(ctx context.Context, path string) ([]byte, error) {
	b, err := d.StorageDriver.GetContent(ctx, path)
	return b, named(d.Name(), err)
}

func (d readOnlyDriver) Reader(ctx context.Context, path string, offset int64) (io.ReadCloser, error) {
	r, err := d.StorageDriver.Reader(ctx, path, offset)
	return r, named(d.Name(), err)
}

func (d readOnlyDriver) Stat(ctx context.Context, path string) (storagedriver.FileInfo, error) {
	fi, err := d.StorageDriver.Stat(ctx, path)
	return fi, named(d.Name(), err)
}

func (d readOnlyDriver) List(ctx context.Context, path string) ([]string, error) {
	l, err := d.StorageDriver.List(ctx, path)
	return l, named(d.Name(), err)
}

func (d readOnlyDriver) PutContent(context.Context, string, []byte) error { return d.refuse() }

func (d readOnlyDriver) Writer(context.Context, string, bool) (storagedriver.FileWriter, error) {
	return nil, d.refuse()
}

func (d readOnlyDriver) Move(context.Context, string, string) error { return d.refuse() }

func (d readOnlyDriver) Delete(context.Context, string) error { return d.refuse() }

func (d readOnlyDriver) RedirectURL(*http.Request, string) (string, error) { return "", nil }

func (d readOnlyDriver) Walk(ctx context.Context, path string, f storagedriver.WalkFn, options ...func(*storagedriver.WalkOptions)) error {
	return storagedriver.WalkFallback(ctx, d, path, f, options...)
}

// layeredDriver reads from upper, then from lower where upper does not have the path, and
// writes only to upper. Paths are the same in both, so a tag written to upper shadows the
// same tag in lower and a repository can hold blobs from both.
type layeredDriver struct {
	upper storagedriver.StorageDriver
	lower storagedriver.StorageDriver
}

// named re-labels the errors distribution defines with the name of the driver that returned
// them, which is what callers and distribution's conformance suite expect.
func named(name string, err error) error {
	var (
		nf  storagedriver.PathNotFoundError
		ip  storagedriver.InvalidPathError
		io  storagedriver.InvalidOffsetError
		gen storagedriver.Error
	)
	// distribution matches these by value type, so they go back unwrapped.
	switch {
	case err == nil:
		return nil
	case errors.As(err, &nf):
		nf.DriverName = name
		return nf
	case errors.As(err, &ip):
		ip.DriverName = name
		return ip
	case errors.As(err, &io):
		io.DriverName = name
		return io
	case errors.As(err, &gen):
		gen.DriverName = name
		return gen
	}
	return err
}

func notFound(err error) bool {
	var nf storagedriver.PathNotFoundError
	return errors.As(err, &nf)
}

func (d *layeredDriver) Name() string { return "cairn-layered" }

func (d *layeredDriver) GetContent(ctx context.Context, path string) ([]byte, error) {
	b, err := d.upper.GetContent(ctx, path)
	if notFound(err) {
		b, err = d.lower.GetContent(ctx, path)
	}
	return b, named(d.Name(), err)
}

func (d *layeredDriver) Reader(ctx context.Context, path string, offset int64) (io.ReadCloser, error) {
	r, err := d.upper.Reader(ctx, path, offset)
	if notFound(err) {
		r, err = d.lower.Reader(ctx, path, offset)
	}
	return r, named(d.Name(), err)
}

func (d *layeredDriver) Stat(ctx context.Context, path string) (storagedriver.FileInfo, error) {
	fi, err := d.upper.Stat(ctx, path)
	if notFound(err) {
		fi, err = d.lower.Stat(ctx, path)
	}
	return fi, named(d.Name(), err)
}

// List merges both layers' entries; a path is missing only when it is missing from both.
func (d *layeredDriver) List(ctx context.Context, path string) ([]string, error) {
	up, uerr := d.upper.List(ctx, path)
	if uerr != nil && !notFound(uerr) {
		return nil, named(d.Name(), uerr)
	}
	low, lerr := d.lower.List(ctx, path)
	if lerr != nil && !notFound(lerr) {
		return nil, named(d.Name(), lerr)
	}
	if uerr != nil && lerr != nil {
		return nil, named(d.Name(), lerr)
	}
	seen := make(map[string]bool, len(up)+len(low))
	out := make([]string, 0, len(up)+len(low))
	for _, p := range append(up, low...) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out, nil
}

func (d *layeredDriver) PutContent(ctx context.Context, path string, content []byte) error {
	return named(d.Name(), d.upper.PutContent(ctx, path, content))
}

func (d *layeredDriver) Writer(ctx context.Context, path string, append bool) (storagedriver.FileWriter, error) {
	w, err := d.upper.Writer(ctx, path, append)
	return w, named(d.Name(), err)
}

func (d *layeredDriver) Move(ctx context.Context, src, dst string) error {
	return named(d.Name(), d.upper.Move(ctx, src, dst))
}

// Delete removes a path from upper; what lower holds stays, and deleting it is refused.
func (d *layeredDriver) Delete(ctx context.Context, path string) error {
	err := d.upper.Delete(ctx, path)
	if _, lerr := d.lower.Stat(ctx, path); lerr == nil {
		return storagedriver.Error{DriverName: d.Name(), Detail: errReadOnly}
	}
	return named(d.Name(), err)
}

func (d *layeredDriver) RedirectURL(*http.Request, string) (string, error) { return "", nil }

func (d *layeredDriver) Walk(ctx context.Context, path string, f storagedriver.WalkFn, options ...func(*storagedriver.WalkOptions)) error {
	return named(d.Name(), storagedriver.WalkFallback(ctx, d, path, f, options...))
}
