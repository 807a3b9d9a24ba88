package agents

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/daemon/desired"
	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/daemon/token"
	"github.com/cairn-appliance/cairn/site"
)

// The host agent's calls (agent/api.CallDesired, CallStatus) name the host in the path and
// carry its host token, minted with each provisioning plan and handed over in the configdrive.

// hostCall reads the host and the token of a host agent's request.
func hostCall(r *http.Request, name string) call {
	c := call{name: name, mac: "host " + r.PathValue("host"), remote: r.RemoteAddr}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		c.remote = host
	}
	if auth := r.Header.Get("Authorization"); auth != "" {
		c.token = "\x00"
		if t, ok := strings.CutPrefix(auth, "Bearer "); ok && strings.TrimSpace(t) != "" {
			c.token = strings.TrimSpace(t)
		}
	}
	return c
}

// authorizeHost checks c's token against the host token of the host the path names.
func authorizeHost(tx state.Tx, name string, c call) (state.Host, string, error) {
	h, found, err := tx.Host(name)
	if err != nil {
		return state.Host{}, "", err
	}
	switch {
	case c.token == "":
		return h, missing, nil
	case !found || h.Phase == state.Discovered || !token.Matches(h.HostTokenHash, c.token):
		return h, wrong, nil
	}
	return h, "", nil
}

// hostAuthorized reads the host of a host agent's call when its token is the host's, and
// otherwise answers 401, records why, and returns false.
func (s *server) hostAuthorized(w http.ResponseWriter, r *http.Request, c call) (state.Host, bool) {
	name := r.PathValue("host")
	var h state.Host
	var why string
	err := s.Store.View(r.Context(), func(tx state.Tx) (err error) {
		h, why, err = authorizeHost(tx, name, c)
		return err
	})
	if err == nil && why != "" {
		err = s.Store.Update(r.Context(), func(tx state.Tx) error { return s.refuse(tx, c, h, why) })
		if err == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="cairn agent"`)
			fail(w, http.StatusUnauthorized, why+" token")
			return h, false
		}
	}
	if err != nil {
		s.Log.Error("agent call", "call", c.name, "host", name, "err", err)
		fail(w, http.StatusInternalServerError, "reading the state: "+err.Error())
		return h, false
	}
	return h, true
}

// desired answers a host agent's GET of its desired containers, long-polling when it names the
// generation it has (?generation=N&wait=SECONDS).
func (s *server) desired(w http.ResponseWriter, r *http.Request) {
	c := hostCall(r, api.CallDesired)
	have := int64(-1)
	var wait time.Duration
	if v := r.URL.Query().Get("generation"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			fail(w, http.StatusBadRequest, fmt.Sprintf("generation %q: expected a number of 0 or more", v))
			return
		}
		have = n
	}
	if v := r.URL.Query().Get("wait"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			fail(w, http.StatusBadRequest, fmt.Sprintf("wait %q: expected seconds, 0 or more", v))
			return
		}
		wait = min(time.Duration(n)*time.Second, api.MaxWait)
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	for {
		changed := s.hosts.wait(r.PathValue("host")) // before the read: no change slips between
		h, ok := s.hostAuthorized(w, r, c)
		if !ok {
			return
		}
		if h.ContainersGeneration != have || ctx.Err() != nil || s.logs.waiting(h.Name) {
			s.answerDesired(w, r, h)
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			if r.Context().Err() != nil {
				return // the agent went away
			}
		}
	}
}

func (s *server) answerDesired(w http.ResponseWriter, r *http.Request, h state.Host) {
	var cur *site.Site
	if s.Site != nil {
		cur = s.Site()
	}
	registry := r.Host
	if u := s.serverURL(r); strings.HasPrefix(u, "http://") {
		registry = strings.TrimPrefix(u, "http://")
	}
	d, err := desired.Of(desired.Input{Host: h.Name, Generation: h.ContainersGeneration, Containers: h.Containers,
		Digests: h.Digests, Registry: registry, File: desired.Files(cur)})
	if err != nil {
		// The site changed between the record and this read: the agent asks again.
		w.Header().Set("Retry-After", "2")
		fail(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	d.Logs = s.logs.take(h.Name)
	reply(w, http.StatusOK, d)
}

// status records a host agent's report, and moves the host to ready, deploying or failed.
func (s *server) status(w http.ResponseWriter, r *http.Request) {
	c := hostCall(r, api.CallStatus)
	if _, ok := s.hostAuthorized(w, r, c); !ok {
		return
	}
	var st api.HostStatus
	if !decode(w, r, &st) {
		return
	}
	switch st.State {
	case api.HostReady, api.HostDeploying, api.HostFailed:
	default:
		fail(w, http.StatusBadRequest, fmt.Sprintf("state %q: expected %s, %s or %s", st.State, api.HostReady, api.HostDeploying, api.HostFailed))
		return
	}
	st.Reason = text(st.Reason, 500)
	st.Time = time.Time{} // the host's clock: not recorded, so an unchanged report writes nothing
	raw, err := json.Marshal(st)
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	name := r.PathValue("host")
	err = s.Store.Update(r.Context(), func(tx state.Tx) error {
		h, found, err := tx.Host(name)
		if err != nil || !found {
			return err
		}
		phase, reason := hostPhase(h, st)
		if sameJSON(h.Agent, raw) && phase == h.Phase && reason == h.Reason {
			return nil
		}
		h.Agent, h.AgentSeen, h.Updated = raw, now(), now()
		if phase != h.Phase || reason != h.Reason {
			msg := fmt.Sprintf("%s: generation %d of %d applied", phase, st.Applied, h.ContainersGeneration)
			if reason != "" {
				msg += ": " + reason
			}
			if err := tx.Append(state.Event{Host: h.Name, Kind: "host." + string(phase), Message: msg}); err != nil {
				return err
			}
			h.Phase, h.Reason = phase, reason
		}
		return tx.PutHost(h)
	})
	if err != nil {
		s.Log.Error("agent call", "call", c.name, "host", name, "err", err)
		fail(w, http.StatusInternalServerError, "recording the report: "+err.Error())
		return
	}
	reply(w, http.StatusAccepted, nil)
}

// hostPhase is the phase a host's report puts it in, with the reason. Only a host whose OS
// runs (provisioned and after) moves: one being provisioned again keeps its phase.
func hostPhase(h state.Host, st api.HostStatus) (state.Phase, string) {
	switch h.Phase {
	case state.Provisioned, state.Deploying, state.Ready:
	case state.Failed:
		if h.Failures > 0 { // a failed provisioning: its disk is not trusted
			return h.Phase, h.Reason
		}
	default:
		return h.Phase, h.Reason
	}
	switch {
	case st.State == api.HostFailed && st.Attempted == h.ContainersGeneration:
		return state.Failed, st.Reason
	case st.State == api.HostReady && st.Applied == h.ContainersGeneration:
		return state.Ready, ""
	}
	return state.Deploying, ""
}

func sameJSON(a, b json.RawMessage) bool { return string(a) == string(b) }

// hostWaiters wakes long-polling host agents when the state writes their host.
type hostWaiters struct {
	once sync.Once
	st   state.Store
	mu   sync.Mutex
	by   map[string]chan struct{}
}

// wake wakes the long polls of host name now.
func (hw *hostWaiters) wake(name string) {
	hw.mu.Lock()
	defer hw.mu.Unlock()
	if c, ok := hw.by[name]; ok {
		close(c)
		delete(hw.by, name)
	}
}

// wait returns a channel closed at the next committed write of host name.
func (hw *hostWaiters) wait(name string) <-chan struct{} {
	hw.once.Do(func() {
		hw.mu.Lock()
		hw.by = map[string]chan struct{}{}
		hw.mu.Unlock()
		changes, _ := hw.st.Subscribe() // for the life of the store
		go func() {
			for ch := range changes {
				hw.mu.Lock()
				for _, h := range ch.Hosts {
					if c, ok := hw.by[h]; ok {
						close(c)
						delete(hw.by, h)
					}
				}
				hw.mu.Unlock()
			}
		}()
	})
	hw.mu.Lock()
	defer hw.mu.Unlock()
	c, ok := hw.by[name]
	if !ok {
		c = make(chan struct{})
		hw.by[name] = c
	}
	return c
}
