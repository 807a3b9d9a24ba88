// Package agents serves the agent API (package agent/api) that the netboot agent calls: the
// inventory of a machine, its provisioning plan, progress, and the end of the attempt (done
// or failed); and the host agent's calls (host.go): its desired containers, long-polled by
// generation, and its reports, which move a provisioned host to deploying, ready or failed.
// It is apart from package daemon/boot, which serves firmware (plain scripts and files, no
// secrets asked): this one checks tokens and moves hosts through their phases.
//
// A provisioning call carries the host's one-time token (the netboot kernel command line's
// cairn.token, minted by package daemon/boot for each boot) as a bearer token; only its hash
// is in the state. The token dies when the attempt ends, done or failed. A call whose token is
// missing, wrong or reused gets 401 and an event that names the machine and why.
//
// A plan names the host's OS image in the store (its blob URL, digests and format), its disk,
// its extra partitions, and its configdrive (configdrive.go): cloud-init's meta-data,
// network-config and user-data from the host's spec and the applied site, and the host
// agent's file with a host token minted for the attempt (only its hash is kept). A done is
// taken only when it reports the image's uncompressed digest (or adopts a disk that already
// holds this provisioning, see agent/api.ProvisionPlan); any other digest fails the attempt.
// Failed attempts are counted (state.Host.Failures); package daemon/boot stops booting the
// agent after state.MaxAttempts of them in a row.
//
// A discovery call carries no token and can only create or update the machine's discovered
// record (discovered-<mac without colons>) with the inventory it reports. Once a site host
// has the MAC (the record is adopted, see package daemon/reconcile), it gets 401: the agent
// reboots and the machine boots to be provisioned.
//
// A host agent's call names its host in the path and carries the host token of its
// configdrive; any other token, or none, gets 401 and an event. Its desired containers come
// from the state (package daemon/desired), the files' content from the site last applied. A
// long poll is woken by the state's next write of its host. Reports are recorded only when
// they change, so that agents reporting every few seconds cost no disk syncs.
//
// Bodies are at most agent/api.MaxBody. Progress is recorded at most every ProgressEvery per
// host and at every new step, so that many agents reporting often cost few disk syncs.
package agents

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/daemon/token"
	"github.com/cairn-appliance/cairn/site"
)

// Config wires the agent API to the daemon.
type Config struct {
	Store state.Store
	// Content holds the OS images the plans name: the medium's store, then the upper one.
	Content *airgap.Stores
	// Site is the site last applied (nil before the first): the network and the site's name
	// go into each configdrive. Nil means none.
	Site func() *site.Site
	// Server is the daemon's base URL as the machines reach it, for the image URL of a plan.
	// Empty means the address each request came to.
	Server string
	// ProgressEvery is how often at most a host's progress is recorded when its step does
	// not change (default 2 s).
	ProgressEvery time.Duration
	// MaxDiscovered bounds the discovered records discovery calls may create (default 4096):
	// the calls carry no token, so anyone on the network could make them.
	MaxDiscovered int
	// RefusalEvery is how often at most a 401 for the same machine and reason is written to
	// the event log (default 10 s), so that a flood of bad calls does not push out the
	// events that matter. Every 401 is logged.
	RefusalEvery time.Duration
	Log          *slog.Logger
}

type server struct {
	Config

	hosts hostWaiters // long-polling host agents
	logs  logHub      // operators' log requests

	mu       sync.Mutex
	progress map[string]recorded  // by MAC: the last progress recorded
	refused  map[string]time.Time // by MAC and reason: the last refusal written as an event
}

type recorded struct {
	step string
	at   time.Time
}

// New returns the handler of the agent API: mount it at agent/api.PathPrefix ("/agent/v1/").
func New(cfg Config) (*Handler, error) {
	if cfg.Store == nil || cfg.Content == nil {
		return nil, errors.New("agents: a state store and the store's content are needed")
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 2 * time.Second
	}
	if cfg.MaxDiscovered <= 0 {
		cfg.MaxDiscovered = 4096
	}
	if cfg.RefusalEvery <= 0 {
		cfg.RefusalEvery = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &server{Config: cfg, progress: map[string]recorded{}, refused: map[string]time.Time{}}
	s.hosts.st = cfg.Store
	mux := http.NewServeMux()
	p := api.PathPrefix + "machines/{mac}/"
	mux.HandleFunc("POST "+p+api.CallInventory, s.inventory)
	mux.HandleFunc("GET "+p+api.CallPlan, s.plan)
	mux.HandleFunc("POST "+p+api.CallProgress, s.reportProgress)
	mux.HandleFunc("POST "+p+api.CallDone, s.done)
	mux.HandleFunc("POST "+p+api.CallFailed, s.failed)
	hp := api.PathPrefix + "hosts/{host}/"
	mux.HandleFunc("GET "+hp+api.CallDesired, s.desired)
	mux.HandleFunc("POST "+hp+api.CallStatus, s.status)
	mux.HandleFunc("POST "+hp+api.CallLogs+"/{id}", s.logAnswer)
	return &Handler{Handler: mux, s: s}, nil
}

// Handler is the agent API's handler, and the appliance's side of what hosts answer later
// (Logs).
type Handler struct {
	http.Handler
	s *server
}

// now is the clock; tests replace it.
var now = func() time.Time { return time.Now().UTC() }

// parseMAC reads the machine's MAC from the path: a network card's, in any form site.ParseMAC
// takes.
func parseMAC(s string) (site.MAC, error) {
	m, err := site.ParseMAC(s)
	if err != nil || m.IsZero() || m[0]&1 == 1 {
		return m, fmt.Errorf("%q is not a network card's MAC", s)
	}
	return m, nil
}

// call is one request, its machine and its token.
type call struct {
	name   string // the API call: inventory, plan, ...
	mac    string // canonical
	token  string // "" when none was sent
	remote string
}

// begin reads the machine and the token of a request; it answers and returns false when the
// MAC is not one.
func begin(w http.ResponseWriter, r *http.Request, name string) (call, bool) {
	m, err := parseMAC(r.PathValue("mac"))
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return call{}, false
	}
	c := call{name: name, mac: m.String(), remote: r.RemoteAddr}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		c.remote = host
	}
	if auth := r.Header.Get("Authorization"); auth != "" {
		c.token = "\x00" // present but not a bearer token: wrong, never missing
		if t, ok := strings.CutPrefix(auth, "Bearer "); ok && strings.TrimSpace(t) != "" {
			c.token = strings.TrimSpace(t)
		}
	}
	return c, true
}

// Why a call was refused.
const (
	missing = "missing"
	wrong   = "wrong"
	reused  = "reused"
)

// authorize finds the site host of c's MAC and checks c's token against it. It returns the
// host, or the reason to refuse the call.
func authorize(tx state.Tx, c call) (state.Host, string, error) {
	hosts, err := state.HostsByMAC(tx, c.mac)
	if err != nil {
		return state.Host{}, "", err
	}
	var h state.Host
	found := false
	for _, x := range hosts {
		if x.Phase != state.Discovered {
			h, found = x, true
			break
		}
	}
	switch {
	case c.token == "":
		return h, missing, nil
	case !found:
		return h, wrong, nil
	case token.Matches(h.ProvisionTokenHash, c.token):
		return h, "", nil
	case token.Matches(h.ProvisionTokenSpent, c.token):
		return h, reused, nil
	}
	return h, wrong, nil
}

// refuse records a refused call as an event (at most one per RefusalEvery for the same
// machine and reason) and logs it.
func (s *server) refuse(tx state.Tx, c call, h state.Host, why string) error {
	msg := fmt.Sprintf("agent %s call for %s from %s refused: %s token", c.name, c.mac, c.remote, why)
	switch {
	case why == reused:
		msg += " (its attempt has ended)"
	case why == missing && h.Name != "":
		msg += fmt.Sprintf(" (the MAC is host %s's; a discovery agent reboots to provision it)", h.Name)
	case why == wrong && h.Name == "":
		msg += " (no site host has this MAC)"
	}
	s.Log.Warn("agent call refused", "call", c.name, "mac", c.mac, "host", h.Name, "remote", c.remote, "token", why)
	key := c.mac + " " + why
	t := now()
	s.mu.Lock()
	last, seen := s.refused[key]
	if !seen || t.Sub(last) >= s.RefusalEvery {
		if len(s.refused) > 10000 {
			clear(s.refused)
		}
		s.refused[key] = t
	}
	s.mu.Unlock()
	if seen && t.Sub(last) < s.RefusalEvery {
		return nil
	}
	return tx.Append(state.Event{Host: h.Name, Kind: "agent.refused", Message: msg})
}

// errUnauthorized ends a transaction that refused a call after recording why.
var errUnauthorized = errors.New("unauthorized")

// authorized runs fn on the host of c's MAC in one transaction when c's token is its
// provisioning token, and otherwise answers 401 and records why. fn changes the host in place
// (it is written back) and returns what to answer.
func (s *server) authorized(w http.ResponseWriter, r *http.Request, c call, fn func(tx state.Tx, h *state.Host) (int, any, error)) {
	var code int
	var body any
	err := s.Store.Update(r.Context(), func(tx state.Tx) error {
		h, why, err := authorize(tx, c)
		if err != nil {
			return err
		}
		if why != "" {
			code, body = http.StatusUnauthorized, api.Error{Error: why + " token"}
			return s.refuse(tx, c, h, why)
		}
		code, body, err = fn(tx, &h)
		if err != nil || code >= 300 {
			return err
		}
		h.Updated = now()
		return tx.PutHost(h)
	})
	if err != nil {
		s.Log.Error("agent call", "call", c.name, "mac", c.mac, "err", err)
		fail(w, http.StatusInternalServerError, "recording the call: "+err.Error())
		return
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="cairn agent"`)
	}
	reply(w, code, body)
}

// decode reads a JSON body of at most api.MaxBody bytes into v.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, api.MaxBody)
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is over %d bytes", api.MaxBody))
		} else {
			fail(w, http.StatusBadRequest, "reading the body: "+err.Error())
		}
		return false
	}
	return true
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if v == nil {
		v = struct{}{}
	}
	_ = json.NewEncoder(w).Encode(v) // the agent may have gone
}

func fail(w http.ResponseWriter, code int, msg string) { reply(w, code, api.Error{Error: msg}) }

// text keeps what an agent says fit for a status line: one line of printable characters, at
// most n of them.
func text(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || !unicode.IsPrint(r) && r != ' ' {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		s = string(r[:n-1]) + "…"
	}
	return s
}

// stepName is what a progress step may be called.
var stepName = regexp.MustCompile(`^[a-z0-9][a-z0-9 _-]{0,31}$`)

// serverURL is the daemon's base URL as the machine reached it.
func (s *server) serverURL(r *http.Request) string {
	if s.Server != "" {
		return strings.TrimSuffix(s.Server, "/")
	}
	return "http://" + r.Host
}
