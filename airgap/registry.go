package airgap

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

// RegistryConfig says which store a registry serves.
type RegistryConfig struct {
	// Dir is the store to serve, usually on the read-only medium. The registry never writes to it.
	Dir string
	// UpperDir, when set, is a writable store on local disk layered over Dir: reads look in
	// UpperDir first, then in Dir; pushes go to UpperDir. Without it the registry refuses pushes.
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
// cfg.Dir in place, with no copy. Blob GETs answer Range requests. Upload purging, health
// polling, redirects and every other background writer are off.
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
	var drv storagedriver.StorageDriver = readOnlyDriver{fsDriver(cfg.Dir)}
	readOnly := true
	if cfg.UpperDir != "" {
		//nolint:gosec // G301: the store is read by the registry, which may run as another user
		if err := os.MkdirAll(filepath.Join(cfg.UpperDir, layout), 0o755); err != nil {
			return nil, fmt.Errorf("registry: preparing the writable store: %w", err)
		}
		drv = &layeredDriver{upper: fsDriver(cfg.UpperDir), lower: drv}
		readOnly = false
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
				"readonly":      map[any]any{"enabled": readOnly},
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
	return handlers.NewApp(context.Background(), conf), nil
}

// catalogMaxEntries is the most repositories one /v2/_catalog page may ask for.
const catalogMaxEntries = 1000

func fsDriver(dir string) storagedriver.StorageDriver {
	return filesystem.New(filesystem.DriverParameters{RootDirectory: dir, MaxThreads: 100})
}
