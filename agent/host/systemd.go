package host

import (
	"context"
	"fmt"
	"strings"
)

// Systemd is what the agent asks of the host's systemd. Start, Restart and Stop queue a job
// and wait for its result: JobDone, or failed, timeout, canceled, dependency, skipped; they
// return ctx's error when ctx ends first.
type Systemd interface {
	// Reload is a daemon-reload: the generators (quadlet among them) run again.
	Reload(ctx context.Context) error
	Start(ctx context.Context, unit string) (result string, err error)
	Restart(ctx context.Context, unit string) (result string, err error)
	// Stop stops unit; one not loaded or not active is stopped already (JobDone).
	Stop(ctx context.Context, unit string) (result string, err error)
	// Unit reads a unit's state.
	Unit(ctx context.Context, unit string) (UnitState, error)
}

// JobDone is the result of a job that did what it was asked.
const JobDone = "done"

// UnitState is a unit as systemd sees it.
type UnitState struct {
	LoadState   string // loaded, not-found ...
	ActiveState string // active, inactive, failed, activating ...
	SubState    string
	// Restarts counts the restarts of a service by its Restart= setting (NRestarts).
	Restarts int
}

// serviceOf is the service quadlet generates from a unit file name.
func serviceOf(unit string) string {
	i := strings.LastIndexByte(unit, '.')
	if i < 0 {
		return unit + ".service"
	}
	base, ext := unit[:i], unit[i+1:]
	switch ext {
	case "container", "kube":
		return base + ".service"
	case "volume", "network", "pod", "image", "build":
		return base + "-" + ext + ".service"
	}
	return unit
}

// JobError is a job whose result was not JobDone.
type JobError struct {
	Unit, Op, Result string
}

func (e *JobError) Error() string {
	return fmt.Sprintf("unit %s: %s job result %s", e.Unit, e.Op, e.Result)
}
