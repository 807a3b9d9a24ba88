// Package desired turns what the daemon recorded of a host's containers (package daemon/plan's
// canonical JSON, kept in the state) into what the host agent is served: agent/api.Desired,
// every image pinned to its digest in the store, every default filled in, config files with
// their content. The daemon serves it on the agent API; cairn site units renders it without
// an appliance.
//
// It holds the one place where a site's container defaults (restart always, network bridge,
// health check every 30 s with a 10 s timeout and 3 retries) become explicit.
package desired

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/daemon/plan"
	"github.com/cairn-appliance/cairn/site"
)

// The defaults of a container's keys the site leaves out.
const (
	DefaultRestart        = "always"
	DefaultNetwork        = "bridge"
	DefaultHealthInterval = 30 * time.Second
	DefaultHealthTimeout  = 10 * time.Second
	DefaultHealthRetries  = 3
)

// Input is a host's recorded containers.
type Input struct {
	Host       string
	Generation int64
	// Containers and Digests are plan.Desired's (or state.Host's) JSON: the containers of the
	// host's roles sorted by name, and their images' digests by container name.
	Containers json.RawMessage
	Digests    json.RawMessage
	// Registry is the appliance's registry as the host reaches it (host:port).
	Registry string
	// File returns the content of a site file by its sha256 (hex), false when the site no
	// longer has it.
	File func(sha256 string) ([]byte, bool)
}

// container is a recorded container: plan's form.
type container struct {
	site.Container
	Role string `json:"role"`
}

// Of builds the host's Desired. It fails when a container's image has no digest (the site was
// recorded without a store) or a file's content is gone (the site changed since: ask again).
func Of(in Input) (*api.Desired, error) {
	d := &api.Desired{Host: in.Host, Generation: in.Generation, Registry: in.Registry, Containers: []api.Container{}}
	var cs []container
	if len(in.Containers) > 0 {
		if err := json.Unmarshal(in.Containers, &cs); err != nil {
			return nil, fmt.Errorf("host %s: reading its containers: %w", in.Host, err)
		}
	}
	digests := map[string]string{}
	if len(in.Digests) > 0 {
		if err := json.Unmarshal(in.Digests, &digests); err != nil {
			return nil, fmt.Errorf("host %s: reading its image digests: %w", in.Host, err)
		}
	}
	for _, c := range cs {
		dg := digests[c.Name]
		if dg == "" {
			return nil, fmt.Errorf("host %s: container %s: image %s has no digest in the store", in.Host, c.Name, c.Image)
		}
		ac := api.Container{
			Name: c.Name, Role: c.Role, Image: c.Image.String(), Digest: dg,
			Entrypoint: c.Entrypoint, Command: c.Command, Env: c.Env,
			Network: or(c.Network, DefaultNetwork), User: c.User, Restart: or(c.Restart, DefaultRestart),
		}
		if c.Image.Digest != "" { // pinned in the site: the name alone, as podman reads it
			ac.Image = (site.Image{Name: c.Image.Name, Tag: c.Image.Tag}).String()
		}
		for _, p := range c.Ports {
			ac.Ports = append(ac.Ports, p.String())
		}
		for _, v := range c.Volumes {
			ac.Volumes = append(ac.Volumes, v.String())
		}
		if h := c.Health; h != nil {
			ac.Health = &api.Health{
				Command:  h.Command,
				Interval: dur(h.Interval, DefaultHealthInterval),
				Timeout:  dur(h.Timeout, DefaultHealthTimeout),
				Retries:  h.Retries,
			}
			if ac.Health.Retries == 0 {
				ac.Health.Retries = DefaultHealthRetries
			}
			if h.StartPeriod != 0 {
				ac.Health.StartPeriod = time.Duration(h.StartPeriod).String()
			}
		}
		for _, f := range c.Files {
			data, ok := in.File(f.SHA256)
			if !ok {
				return nil, fmt.Errorf("host %s: container %s: file %s (sha256 %s) is no longer in the site", in.Host, c.Name, f.Source, f.SHA256)
			}
			ac.Files = append(ac.Files, api.File{Target: f.Target, SHA256: f.SHA256, Data: data})
		}
		slices.SortFunc(ac.Files, func(a, b api.File) int { return strings.Compare(a.Target, b.Target) })
		d.Containers = append(d.Containers, ac)
	}
	return d, nil
}

// Files indexes the content of every file the site's containers mount by its sha256, for
// Input.File.
func Files(s *site.Site) func(string) ([]byte, bool) {
	m := map[string][]byte{}
	if s != nil {
		for _, r := range s.Roles {
			for _, c := range r.Containers {
				for _, f := range c.Files {
					m[f.SHA256] = f.Data
				}
			}
		}
	}
	return func(sha string) ([]byte, bool) { b, ok := m[sha]; return b, ok }
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func dur(d site.Duration, def time.Duration) string {
	if d == 0 {
		return def.String()
	}
	return time.Duration(d).String()
}

// ForHost is the Desired of host name of site s, its images resolved with resolve, as the
// daemon would serve it once s is applied (generation aside): what cairn site units renders.
func ForHost(s *site.Site, name string, resolve func(site.Image) (string, error), registry string) (*api.Desired, error) {
	ds, err := (&plan.Memo{Resolve: resolve}).Desire(s)
	if err != nil {
		return nil, err
	}
	d, ok := ds[name]
	if !ok {
		names := make([]string, 0, len(s.Hosts))
		for _, h := range s.Hosts {
			names = append(names, h.Name)
		}
		return nil, fmt.Errorf("the site has no host %q; its hosts are %s", name, strings.Join(names, ", "))
	}
	return Of(Input{Host: name, Containers: d.Containers, Digests: d.Digests, Registry: registry, File: Files(s)})
}
