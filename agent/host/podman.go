package host

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-appliance/cairn/agent/quadlet"
)

// Podman is what the agent asks of the host's podman.
type Podman interface {
	// Pull pulls ref, a name@sha256:... reference, into the host's image store.
	Pull(ctx context.Context, ref string) error
	// List lists the containers that carry the owner label (quadlet.OwnerLabel), in every
	// state.
	List(ctx context.Context) ([]ContainerInfo, error)
	// Remove removes the container with the given ID, stopping it first.
	Remove(ctx context.Context, id string) error
	// Logs copies a container's log to w: its last tail lines (all for tail < 0), and what
	// follows until ctx ends when follow is set.
	Logs(ctx context.Context, container string, follow bool, tail int, w io.Writer) error
}

// ContainerInfo is a container as podman shows it.
type ContainerInfo struct {
	ID    string
	Name  string
	State string // running, exited, created, stopped, paused ...
	// Health is the health check's status: starting, healthy or unhealthy; "" without one.
	Health string
	// ImageDigest is the manifest digest of the image it runs.
	ImageDigest string
	// Restarts counts podman's restarts by its own restart policy (quadlet's units leave
	// restarting to systemd: see UnitState.Restarts).
	Restarts int
	Started  time.Time
	Labels   map[string]string
}

// Owned says c carries cairn's owner label.
func (c ContainerInfo) Owned() bool { return c.Labels[quadlet.OwnerLabel] == quadlet.OwnerValue }

// PodmanCLI is podman through its command line (its Go bindings are out of reach), with
// JSON output.
type PodmanCLI struct {
	// Bin is the podman binary; default "podman" from PATH.
	Bin string
	// run runs podman with args and returns its standard output (tests replace it).
	run func(ctx context.Context, args ...string) ([]byte, error)
}

func (p *PodmanCLI) exec(ctx context.Context, args ...string) ([]byte, error) {
	if p.run != nil {
		return p.run(ctx, args...)
	}
	bin := p.Bin
	if bin == "" {
		bin = "podman"
	}
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...) //nolint:gosec // G204: podman, with arguments of the agent's making
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if len(msg) > 500 {
			msg = msg[len(msg)-500:]
		}
		if msg == "" {
			return out.Bytes(), fmt.Errorf("podman %s: %w", args[0], err)
		}
		return out.Bytes(), fmt.Errorf("podman %s: %w: %s", args[0], err, msg)
	}
	return out.Bytes(), nil
}

// Pull pulls ref quietly.
func (p *PodmanCLI) Pull(ctx context.Context, ref string) error {
	_, err := p.exec(ctx, "pull", "--quiet", ref)
	return err
}

// List runs podman ps for the owned containers' IDs, then podman container inspect for what
// ps leaves out (health, image digest, restart count).
func (p *PodmanCLI) List(ctx context.Context) ([]ContainerInfo, error) {
	out, err := p.exec(ctx, "ps", "--all", "--filter", "label="+quadlet.OwnerLabel, "--format", "json")
	if err != nil {
		return nil, err
	}
	ps, err := parsePS(out)
	if err != nil {
		return nil, err
	}
	if len(ps) == 0 {
		return nil, nil
	}
	args := []string{"container", "inspect"}
	for _, c := range ps {
		args = append(args, c.ID)
	}
	out, err = p.exec(ctx, args...)
	infos, perr := parseInspect(out)
	if err != nil && (perr != nil || len(infos) == 0) {
		// A container removed between ps and inspect fails the inspect; podman still
		// prints the others.
		return nil, err
	}
	if perr != nil {
		return nil, perr
	}
	return infos, nil
}

// Remove removes a container by ID, stopping it first.
func (p *PodmanCLI) Remove(ctx context.Context, id string) error {
	_, err := p.exec(ctx, "rm", "--force", "--ignore", id)
	return err
}

// Logs copies podman logs of a container to w.
func (p *PodmanCLI) Logs(ctx context.Context, container string, follow bool, tail int, w io.Writer) error {
	args := []string{"logs", "--tail", strconv.Itoa(tail)}
	if follow {
		args = append(args, "--follow")
	}
	args = append(args, "--", container)
	bin := p.Bin
	if bin == "" {
		bin = "podman"
	}
	cmd := exec.CommandContext(ctx, bin, args...) //nolint:gosec // G204: as in exec
	cmd.Stdout, cmd.Stderr = w, w
	err := cmd.Run()
	if follow && ctx.Err() != nil {
		return nil
	}
	return err
}

// psEntry is what the agent reads of an entry of podman ps --format json (podman 5's
// entities.ListContainer).
type psEntry struct {
	ID     string            `json:"Id"`
	Names  []string          `json:"Names"`
	State  string            `json:"State"`
	Labels map[string]string `json:"Labels"`
}

func parsePS(b []byte) ([]psEntry, error) {
	var ps []psEntry
	if err := json.Unmarshal(b, &ps); err != nil {
		return nil, fmt.Errorf("reading podman ps's JSON: %w", err)
	}
	for _, c := range ps {
		if c.ID == "" {
			return nil, errors.New("reading podman ps's JSON: an entry without Id")
		}
	}
	return ps, nil
}

// inspectEntry is what the agent reads of podman container inspect's JSON (podman 5's
// define.InspectContainerData).
type inspectEntry struct {
	ID           string `json:"Id"`
	Name         string `json:"Name"`
	ImageDigest  string `json:"ImageDigest"`
	RestartCount int    `json:"RestartCount"`
	State        *struct {
		Status    string    `json:"Status"`
		StartedAt time.Time `json:"StartedAt"`
		Health    *struct {
			Status string `json:"Status"`
		} `json:"Health"`
	} `json:"State"`
	Config *struct {
		Labels map[string]string `json:"Labels"`
	} `json:"Config"`
}

func parseInspect(b []byte) ([]ContainerInfo, error) {
	var es []inspectEntry
	if err := json.Unmarshal(b, &es); err != nil {
		return nil, fmt.Errorf("reading podman container inspect's JSON: %w", err)
	}
	infos := make([]ContainerInfo, 0, len(es))
	for _, e := range es {
		if e.ID == "" || e.State == nil {
			return nil, fmt.Errorf("reading podman container inspect's JSON: an entry without Id or State (%q)", e.Name)
		}
		c := ContainerInfo{
			ID:          e.ID,
			Name:        strings.TrimPrefix(e.Name, "/"),
			State:       e.State.Status,
			ImageDigest: e.ImageDigest,
			Restarts:    e.RestartCount,
		}
		if !e.State.StartedAt.IsZero() && e.State.StartedAt.Year() > 1 {
			c.Started = e.State.StartedAt
		}
		if e.State.Health != nil {
			c.Health = e.State.Health.Status
		}
		if e.Config != nil {
			c.Labels = e.Config.Labels
		}
		infos = append(infos, c)
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Name < infos[j].Name })
	return infos, nil
}
