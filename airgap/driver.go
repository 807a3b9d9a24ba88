package airgap

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sort"
	"strings"

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

// layeredDriver serves two stores as one: lower, the medium, and upper, a store on local disk
// that holds what was added later. The medium wins: every read looks in lower first and in
// upper only for what lower lacks, and a tag that lower holds is read from lower alone (its
// current link and its index), so nothing in upper can shadow what the medium serves. The
// other paths of distribution's layout are named by digest and hold the same bytes in either
// layer, so reading them lower-first changes nothing but which disk answers. Lists merge both
// layers.
//
// Writes go to upper, and deleting what lower holds is refused; NewRegistry passes a
// read-only upper, so through the registry nothing is written at all.
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

// tagsDir is where distribution keeps a repository's tags; each tag is a directory in it.
const tagsDir = "/_manifests/tags/"

// tagDir returns the directory of the tag that path lies in, or "" when path is not inside a
// tag. A repository name's components never start with "_", so the first "/_manifests/tags/"
// in a path is the repository's own.
func tagDir(path string) string {
	i := strings.Index(path, tagsDir)
	if i < 0 {
		return ""
	}
	tag, _, _ := strings.Cut(path[i+len(tagsDir):], "/")
	if tag == "" {
		return ""
	}
	return path[:i+len(tagsDir)+len(tag)]
}

// layers returns the layers to read path from, in order: lower alone for a tag that lower
// holds (or cannot say it lacks), lower then upper for everything else.
func (d *layeredDriver) layers(ctx context.Context, path string) []storagedriver.StorageDriver {
	if t := tagDir(path); t != "" {
		if _, err := d.lower.Stat(ctx, t); !notFound(err) {
			return []storagedriver.StorageDriver{d.lower}
		}
	}
	return []storagedriver.StorageDriver{d.lower, d.upper}
}

// read calls f on each layer of path in turn until one has the path.
func read[T any](ctx context.Context, d *layeredDriver, path string, f func(storagedriver.StorageDriver) (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for _, l := range d.layers(ctx, path) {
		if v, err = f(l); !notFound(err) {
			break
		}
	}
	return v, named(d.Name(), err)
}

func (d *layeredDriver) GetContent(ctx context.Context, path string) ([]byte, error) {
	return read(ctx, d, path, func(l storagedriver.StorageDriver) ([]byte, error) { return l.GetContent(ctx, path) })
}

func (d *layeredDriver) Reader(ctx context.Context, path string, offset int64) (io.ReadCloser, error) {
	return read(ctx, d, path, func(l storagedriver.StorageDriver) (io.ReadCloser, error) { return l.Reader(ctx, path, offset) })
}

func (d *layeredDriver) Stat(ctx context.Context, path string) (storagedriver.FileInfo, error) {
	return read(ctx, d, path, func(l storagedriver.StorageDriver) (storagedriver.FileInfo, error) { return l.Stat(ctx, path) })
}

// List merges the entries of path's layers, sorted and each once; a path is missing only when
// it is missing from every layer.
func (d *layeredDriver) List(ctx context.Context, path string) ([]string, error) {
	var (
		seen  = map[string]bool{}
		out   = []string{}
		found bool
		nfErr error
	)
	for _, l := range d.layers(ctx, path) {
		entries, err := l.List(ctx, path)
		if notFound(err) {
			nfErr = err
			continue
		}
		if err != nil {
			return nil, named(d.Name(), err)
		}
		found = true
		for _, p := range entries {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	if !found {
		return nil, named(d.Name(), nfErr)
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
