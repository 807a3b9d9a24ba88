package host

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/cairn-appliance/cairn/agent/quadlet"
)

// Paths are the files and directories the agent owns on the host.
type Paths struct {
	// UnitDir holds the Quadlet units of the running generation; quadlet finds them there
	// (it searches /etc/containers/systemd and its subdirectories).
	UnitDir string
	// ConfigDir holds the containers' config files, in content-addressed directories.
	ConfigDir string
	// StagingDir is where a generation's units are written before the swap: on the same file
	// system as UnitDir, outside quadlet's search path.
	StagingDir string
	// RegistriesConf is the drop-in that sends every image name to the appliance's registry.
	RegistriesConf string
	// StateDir holds the agent's own state: the applied Desired, the previous one, the last
	// attempt.
	StateDir string
	// Lock is the lock file that keeps a second agent from running.
	Lock string
}

// DefaultPaths are the paths on a host.
func DefaultPaths() Paths {
	l := quadlet.DefaultLayout()
	return Paths{
		UnitDir:        l.UnitDir,
		ConfigDir:      l.ConfigDir,
		StagingDir:     "/etc/containers/cairn-staging",
		RegistriesConf: quadlet.RegistriesConfPath,
		StateDir:       "/var/lib/cairn/agent",
		Lock:           "/run/cairn-agent.lock",
	}
}

// Under is p with every path moved under root (a test's temporary directory).
func (p Paths) Under(root string) Paths {
	j := func(s string) string { return filepath.Join(root, s) }
	return Paths{
		UnitDir:        j(p.UnitDir),
		ConfigDir:      j(p.ConfigDir),
		StagingDir:     j(p.StagingDir),
		RegistriesConf: j(p.RegistriesConf),
		StateDir:       j(p.StateDir),
		Lock:           j(p.Lock),
	}
}

// Layout is the renderer's view of p.
func (p Paths) Layout() quadlet.Layout {
	return quadlet.Layout{UnitDir: p.UnitDir, ConfigDir: p.ConfigDir}
}

// DefaultQuadlet is the host's quadlet generator (podman 5.4 on Debian trixie).
const DefaultQuadlet = "/usr/libexec/podman/quadlet"

// Config configures an Agent. Systemd and Podman are required; the rest has defaults.
type Config struct {
	Paths   Paths
	Systemd Systemd
	Podman  Podman
	// Validate checks rendered units before anything on the host changes. Default:
	// quadlet.Validate with QuadletBin.
	Validate   func(ctx context.Context, units []quadlet.Unit) error
	QuadletBin string
	// WaitTimeout bounds the wait for each restarted unit: its job result, then its container
	// running (and healthy, when it has a health check; the check's start period is added).
	// Default 2 minutes.
	WaitTimeout time.Duration
	// PollInterval is how often a container's state is read while waiting. Default 2 s.
	PollInterval time.Duration
	// Sleep waits d or until ctx is done (tests make time pass without waiting).
	Sleep func(ctx context.Context, d time.Duration) error
	Now   func() time.Time
	// Log gets the agent's progress; nil discards it.
	Log          *slog.Logger
	AgentVersion string
}

func (c *Config) setDefaults() error {
	if c.Systemd == nil || c.Podman == nil {
		return errors.New("host: the agent's config needs Systemd and Podman")
	}
	if c.Paths == (Paths{}) {
		c.Paths = DefaultPaths()
	}
	if c.QuadletBin == "" {
		c.QuadletBin = DefaultQuadlet
	}
	if c.Validate == nil {
		bin := c.QuadletBin
		c.Validate = func(ctx context.Context, units []quadlet.Unit) error { return quadlet.Validate(ctx, bin, units) }
	}
	if c.WaitTimeout <= 0 {
		c.WaitTimeout = 2 * time.Minute
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 2 * time.Second
	}
	if c.Sleep == nil {
		c.Sleep = sleep
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// sleep waits d, or less when ctx ends first (then it returns ctx's error).
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
