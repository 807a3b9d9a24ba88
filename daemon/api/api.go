// Package api is the daemon's operator surface over HTTP: a JSON API (/api/v1/status, /hosts,
// /hosts/{name}, /events, /plan), Prometheus metrics (/metrics) and a read-only status page
// (/), server-rendered and refreshing itself, readable on a phone. /api/v1/backup streams a
// backup archive (package daemon/backup), to the appliance itself only: it holds the site and
// the token hashes.
//
// It reads the state and the site the daemon runs; it changes nothing. Client is the other end
// of the JSON API, for the CLI: typed calls with errors that say what to do.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cairn-appliance/cairn/daemon/agents"
	"github.com/cairn-appliance/cairn/daemon/plan"
	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/site"
)

// Current is what the daemon runs now.
type Current struct {
	Site      *site.Site // the last good site; nil before the first good load
	LoadError string     // why the last load was not applied, "" when it was
	LoadedAt  time.Time  // when the site was last read
}

// Config wires the API to the daemon.
type Config struct {
	Store   state.Store
	Current func() Current
	Log     *slog.Logger
	Version string
	// Ephemeral says why the appliance forgets what it learns at reboot ("" when it keeps it
	// on its data disk); the status and the page show it.
	Ephemeral string
	// Backup, when set, prepares a backup archive for /api/v1/backup.
	Backup func(ctx context.Context) (Archive, error)
	// Logs, when set, streams a container's logs from its host for /api/v1/hosts/{name}/logs.
	Logs Logs
}

type server struct {
	Config
}

// New returns the handler for the whole operator surface.
func New(cfg Config) (http.Handler, error) {
	if cfg.Store == nil || cfg.Current == nil {
		return nil, errors.New("api: a store and the current site are needed")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &server{Config: cfg}
	reg := prometheus.NewRegistry()
	if err := reg.Register(&collector{s: s}); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/status", s.status)
	mux.HandleFunc("GET /api/v1/hosts", s.hosts)
	mux.HandleFunc("GET /api/v1/hosts/{name}", s.host)
	mux.HandleFunc("GET /api/v1/hosts/{name}/logs", s.logs)
	mux.HandleFunc("GET /api/v1/events", s.events)
	mux.HandleFunc("GET /api/v1/plan", s.plan)
	mux.HandleFunc("GET /api/v1/backup", s.backup)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /{$}", s.page)
	return mux, nil
}

// Status is the answer of /api/v1/status.
type Status struct {
	Site       string              `json:"site"`
	Version    string              `json:"version,omitempty"`
	Generation state.Generation    `json:"generation"`
	LoadError  string              `json:"load_error,omitempty"`
	Ephemeral  string              `json:"ephemeral,omitempty"` // "" when the state is on the data disk
	Hosts      int                 `json:"hosts"`
	Phases     map[state.Phase]int `json:"phases"`
}

// Host is a host as the API shows it: the state without its secrets.
type Host struct {
	Name                 string          `json:"name"`
	MAC                  string          `json:"mac"`
	IP                   string          `json:"ip,omitempty"`
	Phase                state.Phase     `json:"phase"`
	Reason               string          `json:"reason,omitempty"`
	Progress             int             `json:"progress,omitempty"`
	Message              string          `json:"message,omitempty"` // the last thing its agent said
	Provision            int             `json:"provision"`
	ContainersGeneration int64           `json:"containers_generation,omitempty"`
	Updated              time.Time       `json:"updated"`
	LastEvent            *state.Event    `json:"last_event,omitempty"`
	Spec                 json.RawMessage `json:"spec,omitempty"`
	Containers           json.RawMessage `json:"containers,omitempty"`
	// Agent is the host agent's last report (agent/api.HostStatus): the generation it runs and
	// each of its containers; AgentSeen when it last changed.
	Agent     json.RawMessage `json:"agent,omitempty"`
	AgentSeen time.Time       `json:"agent_seen,omitzero"`
	// Snippet is a host file for a discovered machine, ready to paste into hosts/NAME.toml.
	Snippet string `json:"snippet,omitempty"`
}

// HostDetail is the answer of /api/v1/hosts/{name}.
type HostDetail struct {
	Host
	// Inventory is what the netboot agent last reported (agent/api.Inventory).
	Inventory json.RawMessage `json:"inventory,omitempty"`
	Events    []state.Event   `json:"events"`
}

func view(h state.Host) Host {
	return Host{Name: h.Name, MAC: h.MAC, IP: h.IP, Phase: h.Phase, Reason: h.Reason, Progress: h.Progress, Message: h.Message,
		Provision: h.Provision, ContainersGeneration: h.ContainersGeneration, Updated: h.Updated,
		Spec: h.Spec, Containers: h.Containers, Agent: h.Agent, AgentSeen: h.AgentSeen, Snippet: agents.Snippet(h)}
}

// snapshot reads everything a page or a status needs in one transaction.
type snapshot struct {
	status Status
	hosts  []Host
}

// eventScan bounds how far back the last event of each host is looked for.
const eventScan = 2000

// hostEvents is how many of its newest events a host's detail shows.
const hostEvents = 100

// read takes a snapshot; with ?full=1 hosts keep their recorded spec and containers (what
// cairn site plan --server diffs a site against).
func (s *server) read(r *http.Request) (snapshot, error) {
	full := r.URL.Query().Get("full") == "1"
	var snap snapshot
	cur := s.Current()
	err := s.Store.View(r.Context(), func(tx state.Tx) error {
		g, err := tx.Generation()
		if err != nil {
			return err
		}
		hosts, err := tx.Hosts()
		if err != nil {
			return err
		}
		last := map[string]state.Event{}
		if evs, err := tx.Latest(eventScan, ""); err == nil {
			for _, e := range evs {
				if e.Host != "" {
					last[e.Host] = e
				}
			}
		}
		snap.status = Status{Generation: g, LoadError: cur.LoadError, Hosts: len(hosts), Phases: map[state.Phase]int{}, Version: s.Version, Ephemeral: s.Ephemeral}
		for _, h := range hosts {
			v := view(h)
			if !full {
				v.Spec, v.Containers = nil, nil
			}
			if e, ok := last[h.Name]; ok {
				v.LastEvent = &e
			}
			snap.hosts = append(snap.hosts, v)
			snap.status.Phases[h.Phase]++
		}
		return nil
	})
	if cur.Site != nil {
		snap.status.Site = cur.Site.Settings.Name
	}
	return snap, err
}

func (s *server) status(w http.ResponseWriter, r *http.Request) {
	snap, err := s.read(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, snap.status)
}

func (s *server) hosts(w http.ResponseWriter, r *http.Request) {
	snap, err := s.read(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	if snap.hosts == nil {
		snap.hosts = []Host{}
	}
	writeJSON(w, snap.hosts)
}

func (s *server) host(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var d HostDetail
	found := false
	err := s.Store.View(r.Context(), func(tx state.Tx) error {
		h, ok, err := tx.Host(name)
		if err != nil || !ok {
			return err
		}
		found = true
		d.Host, d.Inventory = view(h), h.Inventory
		evs, err := tx.Latest(hostEvents, name)
		if err != nil {
			return err
		}
		d.Events = append([]state.Event{}, evs...)
		return nil
	})
	switch {
	case err != nil:
		s.fail(w, err)
	case !found:
		http.Error(w, "no host named "+strconv.Quote(name)+"; GET /api/v1/hosts lists them", http.StatusNotFound)
	default:
		writeJSON(w, d)
	}
}

func (s *server) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	after, err1 := parseUint(q.Get("after"), 0)
	limit, err2 := parseUint(q.Get("limit"), 100)
	if err := errors.Join(err1, err2); err != nil || limit > 1000 {
		http.Error(w, "after and limit are whole numbers; limit is at most 1000", http.StatusBadRequest)
		return
	}
	host := q.Get("host")
	var out []state.Event
	err := s.Store.View(r.Context(), func(tx state.Tx) error {
		for len(out) < int(limit) { //nolint:gosec // at most 1000
			page, err := tx.Events(after, 1000)
			if err != nil || len(page) == 0 {
				return err
			}
			for _, e := range page {
				if (host == "" || e.Host == host) && len(out) < int(limit) { //nolint:gosec // at most 1000
					out = append(out, e)
				}
			}
			after = page[len(page)-1].Seq
		}
		return nil
	})
	if err != nil {
		s.fail(w, err)
		return
	}
	if out == nil {
		out = []state.Event{}
	}
	writeJSON(w, out)
}

func (s *server) plan(w http.ResponseWriter, r *http.Request) {
	cur := s.Current()
	if cur.Site == nil {
		http.Error(w, "no site loaded yet: "+cur.LoadError, http.StatusServiceUnavailable)
		return
	}
	var recorded []state.Host
	if err := s.Store.View(r.Context(), func(tx state.Tx) (err error) {
		recorded, err = tx.Hosts()
		return err
	}); err != nil {
		s.fail(w, err)
		return
	}
	p, err := plan.Compute(cur.Site, recorded)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, p)
}

func parseUint(s string, def uint64) (uint64, error) {
	if s == "" {
		return def, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

func (s *server) fail(w http.ResponseWriter, err error) {
	s.Log.Error("api", "error", err)
	http.Error(w, "reading the state: "+err.Error(), http.StatusInternalServerError)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client may have gone
}

// collector exports the state as Prometheus metrics at scrape time.
type collector struct{ s *server }

var (
	descHosts     = prometheus.NewDesc("cairn_hosts", "Hosts by lifecycle phase.", []string{"phase"}, nil)
	descApplied   = prometheus.NewDesc("cairn_site_generation_applied", "The site generation last applied in full.", nil, nil)
	descAttempted = prometheus.NewDesc("cairn_site_generation_attempted", "The site generation last attempted.", nil, nil)
	descLoadOK    = prometheus.NewDesc("cairn_site_load_ok", "1 when the last site load was applied, 0 when it was rejected (see load_error in /api/v1/status).", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descHosts
	ch <- descApplied
	ch <- descAttempted
	ch <- descLoadOK
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	cur := c.s.Current()
	ok := 1.0
	if cur.LoadError != "" {
		ok = 0
	}
	ch <- prometheus.MustNewConstMetric(descLoadOK, prometheus.GaugeValue, ok)
	_ = c.s.Store.View(context.Background(), func(tx state.Tx) error {
		g, err := tx.Generation()
		if err != nil {
			return err
		}
		ch <- prometheus.MustNewConstMetric(descApplied, prometheus.GaugeValue, float64(g.Applied))
		ch <- prometheus.MustNewConstMetric(descAttempted, prometheus.GaugeValue, float64(g.Attempted))
		hosts, err := tx.Hosts()
		if err != nil {
			return err
		}
		counts := map[state.Phase]int{}
		for _, h := range hosts {
			counts[h.Phase]++
		}
		for _, p := range state.Phases {
			ch <- prometheus.MustNewConstMetric(descHosts, prometheus.GaugeValue, float64(counts[p]), string(p))
		}
		return nil
	})
}
