package airgap

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/distribution/distribution/v3/registry/handlers"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

// RegistryConfig says which stores a registry serves. The registry only reads them: to the
// network it is read-only, whatever the configuration.
type RegistryConfig struct {
	// Dir is the store to serve, usually on the read-only medium. The registry never writes to it.
	Dir string
	// UpperDir, when set, is a second store on local disk served beside Dir: what it adds (new
	// repositories, new tags and their blobs) is served too, but Dir is read first, and a tag
	// that Dir holds is always served from Dir. Only cairn writes UpperDir, with airgap's own
	// store writer; the registry never does. It need not exist yet.
	UpperDir string
}

// driverName is the storage driver name under which NewRegistry hands its driver to
// distribution. distribution looks drivers up by name in a process-wide table, so the name is
// registered once and each registry passes its own driver instance in the parameters.
const driverName = "cairn-airgap"

var registerDriver sync.Once

type passDriver struct{}

func (passDriver) Create(_ context.Context, params map[string]any) (storagedriver.StorageDriver, error) {
	d, ok := params["driver"].(storagedriver.StorageDriver)
	if !ok {
		return nil, errors.New("airgap: no storage driver passed in the parameters")
	}
	return d, nil
}

// layout is the directory distribution's filesystem driver keeps everything in.
var layout = filepath.Join("docker", "registry", "v2")

// NewRegistry returns distribution's registry handler (the /v2/ API) serving the store in
// cfg.Dir in place, with no copy, and what cfg.UpperDir adds. Blob GETs answer Range requests
// and /v2/_catalog lists every repository. Every request but GET and HEAD is refused with
// 405 and the OCI error UNSUPPORTED: pushes, mounts, deletes. Upload purging, health polling,
// redirects and every other background writer are off.
//
// distribution logs through logrus's standard logger; the caller decides where that goes.
// Each handler keeps one idle goroutine (distribution's event broadcaster, which it gives no
// way to stop) for the life of the process, so make one registry per store, not per request.
func NewRegistry(cfg RegistryConfig) (h http.Handler, err error) {
	if cfg.Dir == "" {
		return nil, errors.New("registry: no store directory given")
	}
	if fi, err := os.Stat(filepath.Join(cfg.Dir, layout)); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("registry: %s holds no store (no %s directory); give the directory cairn build wrote", cfg.Dir, layout)
	}
	// Both layers refuse writes, so nothing distribution does can change either store, even
	// if a write got past readOnlyHandler and the maintenance mode below.
	var drv storagedriver.StorageDriver = readOnlyDriver{fsDriver(cfg.Dir)}
	if cfg.UpperDir != "" {
		if fi, err := os.Stat(cfg.UpperDir); err == nil && !fi.IsDir() {
			return nil, fmt.Errorf("registry: the upper store %s is not a directory; give a directory (it may be missing)", cfg.UpperDir)
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("registry: reading the upper store: %w", err)
		}
		drv = &layeredDriver{upper: readOnlyDriver{fsDriver(cfg.UpperDir)}, lower: drv}
	}
	registerDriver.Do(func() { factory.Register(driverName, passDriver{}) })

	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	conf := &configuration.Configuration{
		Version: "0.1",
		Storage: configuration.Storage{
			driverName: configuration.Parameters{"driver": drv},
			"maintenance": configuration.Parameters{
				"uploadpurging": map[any]any{"enabled": false},
				"readonly":      map[any]any{"enabled": true},
			},
			"redirect": configuration.Parameters{"disable": true},
			"cache":    configuration.Parameters{"blobdescriptor": "inmemory"},
		},
	}
	conf.HTTP.Secret = hex.EncodeToString(secret)
	// Left at zero, the catalog lists no repository at all. This is distribution's default
	// when it parses a configuration file; a client gets 100 a page unless it asks for more.
	conf.Catalog.MaxEntries = catalogMaxEntries

	// NewApp reports configuration problems by panicking.
	defer func() {
		if r := recover(); r != nil {
			h, err = nil, fmt.Errorf("registry: configuring distribution: %v", r)
		}
	}()
	return readOnlyHandler{handlers.NewApp(context.Background(), conf)}, nil
}

// catalogMaxEntries is the most repositories one /v2/_catalog page may ask for.
const catalogMaxEntries = 1000

// readOnlyHandler lets only GET and HEAD through to the registry and answers every other
// request itself. distribution's read-only mode alone is not enough: it refuses pushes with a
// plain-text 405 that is not an OCI error, and it still resumes blob upload sessions on
// PATCH, PUT and DELETE (answering 404 BLOB_UPLOAD_INVALID).
type readOnlyHandler struct {
	next http.Handler
}

// writeRefused is the detail of every refusal: what the registry is, and how content is added
// instead.
const writeRefused = "this registry serves cairn's store read-only; it takes no pushes, mounts or deletes: content is added with a signed update bundle"

func (h readOnlyHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		h.next.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Allow", "GET, HEAD")
	// ServeJSON writes the code's own status, 405 for UNSUPPORTED.
	_ = errcode.ServeJSON(w, errcode.ErrorCodeUnsupported.WithDetail(writeRefused))
}

func fsDriver(dir string) storagedriver.StorageDriver {
	return filesystem.New(filesystem.DriverParameters{RootDirectory: dir, MaxThreads: 100})
}
