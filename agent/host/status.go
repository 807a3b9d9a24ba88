package host

import (
	"context"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/cairn-appliance/cairn/agent/api"
)

// Status is the host's status: the applied and attempted generations, the state, and each
// container cairn owns (by its owner label) with its image digest, state, health and restarts
// (podman's and systemd's). A desired container podman does not have shows as missing. The
// error says the containers could not be read; the status holds what could.
func (a *Agent) Status(ctx context.Context) (api.HostStatus, error) {
	a.mu.Lock()
	cur, r, at, applying := a.st.current, a.cur, a.st.attempt, a.applying
	a.mu.Unlock()
	st := api.HostStatus{AgentVersion: a.cfg.AgentVersion, Time: a.cfg.Now(), Containers: []api.ContainerStatus{}}
	if cur != nil {
		st.Applied = cur.Generation
	}
	st.Attempted = st.Applied
	if at.Generation != 0 || at.Failed {
		st.Attempted = at.Generation
	}
	infos, lerr := a.cfg.Podman.List(ctx)
	owned := map[string]ContainerInfo{}
	for _, c := range infos {
		if c.Owned() {
			owned[c.Name] = c
		}
	}
	unready := ""
	for _, u := range r.Units {
		if u.Container == "" {
			continue
		}
		c := containerOf(cur, u)
		cs := api.ContainerStatus{Name: u.Container, State: "missing"}
		if info, ok := owned[u.Container]; ok {
			cs = containerStatus(info)
			delete(owned, u.Container)
		}
		svc := u.Service
		if svc == "" {
			svc = serviceOf(u.Name)
		}
		if us, err := a.cfg.Systemd.Unit(ctx, svc); err == nil {
			cs.Restarts += us.Restarts
		}
		st.Containers = append(st.Containers, cs)
		wantHealth := c != nil && c.Health != nil
		if unready == "" && c != nil && c.Restart != "no" && (cs.State != "running" || wantHealth && cs.Health != "healthy") {
			unready = fmt.Sprintf("%s is %s", cs.Name, cs.State)
			if cs.State == "running" {
				unready = fmt.Sprintf("%s's health check is %q", cs.Name, cs.Health)
			}
		}
	}
	for _, info := range owned { // owned, and no generation names it (yet or any more)
		st.Containers = append(st.Containers, containerStatus(info))
	}
	sort.Slice(st.Containers, func(i, j int) bool { return st.Containers[i].Name < st.Containers[j].Name })
	switch {
	case applying != 0:
		st.State, st.Attempted = api.HostDeploying, applying
	case at.Failed:
		st.State, st.Reason = api.HostFailed, at.Reason
	case lerr != nil:
		st.State, st.Reason = api.HostDeploying, "reading the containers: "+lerr.Error()
	case unready != "":
		st.State, st.Reason = api.HostDeploying, unready
	default:
		st.State = api.HostReady
	}
	if lerr != nil {
		return st, fmt.Errorf("reading the containers: %w", lerr)
	}
	return st, nil
}

func containerStatus(c ContainerInfo) api.ContainerStatus {
	return api.ContainerStatus{
		Name:     c.Name,
		Digest:   c.ImageDigest,
		State:    c.State,
		Health:   c.Health,
		Restarts: c.Restarts,
		Started:  c.Started,
	}
}

// PrintStatus writes st for people: the generations and state, then a table of the
// containers.
func PrintStatus(w io.Writer, st api.HostStatus) error {
	fmt.Fprintf(w, "state:     %s\n", st.State)
	if st.Reason != "" {
		fmt.Fprintf(w, "reason:    %s\n", st.Reason)
	}
	fmt.Fprintf(w, "applied:   generation %d\n", st.Applied)
	if st.Attempted != st.Applied {
		fmt.Fprintf(w, "attempted: generation %d\n", st.Attempted)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTAINER\tSTATE\tHEALTH\tRESTARTS\tSTARTED\tDIGEST")
	for _, c := range st.Containers {
		started := "-"
		if !c.Started.IsZero() {
			started = c.Started.UTC().Format(time.RFC3339)
		}
		health := c.Health
		if health == "" {
			health = "-"
		}
		digest := c.Digest
		if len(digest) > 19 {
			digest = digest[:19] + "…"
		}
		if digest == "" {
			digest = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", c.Name, c.State, health, c.Restarts, started, digest)
	}
	return tw.Flush()
}
