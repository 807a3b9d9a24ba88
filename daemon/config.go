package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/cairn-appliance/cairn/appliance"
)

// DefaultConfigPath is where the appliance keeps the daemon's configuration.
const DefaultConfigPath = "/etc/cairn/daemon.toml"

// Config is the daemon's configuration file (/etc/cairn/daemon.toml on the appliance).
type Config struct {
	// MediumLabel is the volume label of the boot medium that holds the store. A cairn.label=
	// argument on the kernel command line, which the ISO's boot menu sets, overrides it.
	MediumLabel string `toml:"medium_label"`
	// Store is the store's path on the medium, or an absolute path to serve a store from
	// anywhere else (then no medium is looked for).
	Store string `toml:"store"`
	// Site is the site seed's path on the medium (or an absolute path): copied to SiteDir when
	// SiteDir does not exist yet, on the appliance's first boot.
	Site string `toml:"site"`
	// SiteDir is the site directory the daemon converges on: operators edit it (or git pull in
	// it). Empty turns convergence off: the daemon only serves the store.
	SiteDir string `toml:"site_dir"`
	// State is the daemon's state file.
	State string `toml:"state"`
	// Listen is the registry's address.
	Listen string `toml:"listen"`
	// Upper, when set, is a store cairn writes, read after the medium's.
	Upper string `toml:"upper"`
	// DataDir is where the data disk is mounted. When it is not the mount point of a file
	// system on a disk, the appliance is ephemeral: what it learns is lost at reboot, so it
	// provisions no host.
	DataDir string `toml:"data_dir"`
	// AllowEphemeral lets an ephemeral appliance provision hosts anyway (demos and tests).
	AllowEphemeral bool `toml:"allow_ephemeral"`
	// PXE runs DHCP (as site.toml's network.dhcp says) and TFTP on the site's provisioning
	// interface. Default true; the HTTP boot endpoints are served either way.
	PXE bool `toml:"pxe"`
	// NetworkDir, when set (the appliance sets /run/systemd/network), is where the daemon
	// writes the systemd-networkd file that gives the site's provisioning interface the
	// appliance's address; it then runs networkctl reload.
	NetworkDir string `toml:"network_dir"`
}

// DefaultConfig is the configuration when no file says otherwise.
func DefaultConfig() Config {
	return Config{MediumLabel: appliance.MediumLabel, Store: appliance.MediumStoreDir, Site: appliance.MediumSiteDir, Listen: ":5000",
		SiteDir: "/var/lib/cairn/site", State: "/var/lib/cairn/state.db", DataDir: appliance.DataDir, PXE: true}
}

// LoadConfig reads a configuration file over the defaults. Unknown keys are errors, so that a
// misspelt key does not silently fall back to a default.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("reading daemon config: %w", err)
	}
	dec := toml.NewDecoder(bytes.NewReader(b)).DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) {
			return cfg, fmt.Errorf("%s: %s; the keys are medium_label, store, site, site_dir, state, listen, upper, data_dir, allow_ephemeral, pxe and network_dir", path, strings.TrimSpace(strict.String()))
		}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			line, col := de.Position()
			return cfg, fmt.Errorf("%s:%d:%d: %w", path, line, col, de)
		}
		return cfg, fmt.Errorf("%s: %w", path, err)
	}
	if cfg.Listen == "" {
		return cfg, fmt.Errorf("%s: listen is empty; give an address such as \":5000\"", path)
	}
	if cfg.SiteDir != "" && cfg.State == "" {
		return cfg, fmt.Errorf("%s: state is empty; give the state file's path (/var/lib/cairn/state.db), or leave site_dir empty", path)
	}
	if cfg.Store == "" {
		return cfg, fmt.Errorf("%s: store is empty; give the store's path on the medium (%s)", path, appliance.MediumStoreDir)
	}
	return cfg, nil
}
