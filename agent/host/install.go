package host

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
)

// The agent's own service.
const (
	ServiceName     = "cairn-agent.service"
	ServiceUnitPath = "/etc/systemd/system/" + ServiceName
)

// ServiceUnit is the systemd unit that runs `BINARY host run ARGS...` as a service: started
// once the network is online, at every boot, and again whenever it stops.
func ServiceUnit(binary string, args ...string) ([]byte, error) {
	words := append([]string{binary, "host", "run"}, args...)
	for _, w := range words {
		if w == "" || strings.ContainsAny(w, " \t\n\"'\\%$;") {
			return nil, fmt.Errorf("%q cannot go on the unit's command line as it is", w)
		}
	}
	if !filepath.IsAbs(binary) {
		return nil, fmt.Errorf("the agent's binary %q: want an absolute path", binary)
	}
	return []byte(`# Written by cairn-agent host install.
[Unit]
Description=cairn host agent: runs the containers the appliance wants on this host
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart=` + strings.Join(words, " ") + `
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
`), nil
}

// Installer is what Install asks of systemd (DBus does it).
type Installer interface {
	Reload(ctx context.Context) error
	Enable(ctx context.Context, unitFile string) error
	Restart(ctx context.Context, unit string) (result string, err error)
}

// Install writes the agent's service unit to unitPath, reloads systemd, enables the unit and
// (re)starts it: systemctl daemon-reload, enable --now, with a restart so that a new binary
// runs.
func Install(ctx context.Context, sd Installer, unitPath, binary string, args ...string) error {
	unit, err := ServiceUnit(binary, args...)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(unitPath, unit, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", unitPath, err)
	}
	if err := sd.Reload(ctx); err != nil {
		return fmt.Errorf("reloading systemd: %w", err)
	}
	if err := sd.Enable(ctx, unitPath); err != nil {
		return fmt.Errorf("enabling %s: %w", unitPath, err)
	}
	res, err := sd.Restart(ctx, filepath.Base(unitPath))
	if err != nil {
		return fmt.Errorf("starting %s: %w", filepath.Base(unitPath), err)
	}
	if res != JobDone {
		return &JobError{Unit: filepath.Base(unitPath), Op: "start", Result: res}
	}
	return nil
}
