package host

import (
	"context"
	"fmt"

	sd "github.com/coreos/go-systemd/v22/dbus"
)

// DBus is the host's systemd over the system bus.
type DBus struct {
	conn *sd.Conn
}

// ConnectSystemd connects to systemd over the system bus (root's agent: the system manager).
func ConnectSystemd(ctx context.Context) (*DBus, error) {
	c, err := sd.NewSystemConnectionContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting to systemd over D-Bus: %w", err)
	}
	// Job results come as JobRemoved signals; subscribing makes systemd send them whoever
	// else listens.
	if err := c.Subscribe(); err != nil {
		c.Close()
		return nil, fmt.Errorf("subscribing to systemd's signals: %w", err)
	}
	return &DBus{conn: c}, nil
}

// Close closes the connection.
func (s *DBus) Close() { s.conn.Close() }

// Reload runs systemctl daemon-reload's call; it answers once the reload is done.
func (s *DBus) Reload(ctx context.Context) error { return s.conn.ReloadContext(ctx) }

// Start starts unit and waits for the job's result.
func (s *DBus) Start(ctx context.Context, unit string) (string, error) {
	return s.job(ctx, s.conn.StartUnitContext, unit)
}

// Restart restarts unit (starts it when it is not running) and waits for the job's result.
func (s *DBus) Restart(ctx context.Context, unit string) (string, error) {
	return s.job(ctx, s.conn.RestartUnitContext, unit)
}

// Stop stops unit and waits for the job's result. A unit not active has nothing to stop, a
// unit that no longer exists included (systemd refuses to queue a job for it).
func (s *DBus) Stop(ctx context.Context, unit string) (string, error) {
	st, err := s.Unit(ctx, unit)
	if err != nil {
		return "", err
	}
	if st.ActiveState == "inactive" || st.ActiveState == "failed" {
		return JobDone, nil
	}
	return s.job(ctx, s.conn.StopUnitContext, unit)
}

func (s *DBus) job(ctx context.Context, call func(context.Context, string, string, chan<- string) (int, error), unit string) (string, error) {
	// Buffered: the connection delivers the result even when nobody waits any more.
	ch := make(chan string, 1)
	if _, err := call(ctx, unit, "replace", ch); err != nil {
		return "", err
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Unit reads unit's load and active state and, for a service, its restart count.
func (s *DBus) Unit(ctx context.Context, unit string) (UnitState, error) {
	var st UnitState
	for _, p := range []struct {
		name string
		to   *string
	}{{"LoadState", &st.LoadState}, {"ActiveState", &st.ActiveState}, {"SubState", &st.SubState}} {
		v, err := s.conn.GetUnitPropertyContext(ctx, unit, p.name)
		if err != nil {
			return st, fmt.Errorf("reading %s of %s: %w", p.name, unit, err)
		}
		*p.to, _ = v.Value.Value().(string)
	}
	if st.LoadState == "loaded" {
		if v, err := s.conn.GetServicePropertyContext(ctx, unit, "NRestarts"); err == nil {
			if n, ok := v.Value.Value().(uint32); ok {
				st.Restarts = int(n)
			}
		}
	}
	return st, nil
}

// Enable enables the unit file at path (systemctl enable's call).
func (s *DBus) Enable(ctx context.Context, path string) error {
	_, _, err := s.conn.EnableUnitFilesContext(ctx, []string{path}, false, true)
	return err
}
