package agents

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/daemon/state"
)

// Logs reach the operator through the appliance: the host agent, not the daemon, opens the
// connection (hosts need no port open, and no credential of the appliance's). An operator's
// request waits for the host, comes to its agent with the next Desired answer (a new request
// wakes the long poll), and the agent POSTs the container's output, which the daemon copies
// to the operator as it comes.

// LogAnswerWait is how long a log request waits for the host agent to start answering.
var LogAnswerWait = 30 * time.Second

// ErrNoAnswer is returned when the host agent does not take a log request in time.
var ErrNoAnswer = errors.New("the host agent did not answer")

// logSession is one operator's log request.
type logSession struct {
	host    string
	req     api.LogRequest
	w       *io.PipeWriter
	started chan struct{} // closed when the agent begins its answer
	once    sync.Once
}

// logHub holds the log requests waiting for their hosts and those being answered.
type logHub struct {
	mu       sync.Mutex
	pending  map[string][]*logSession // by host: not yet handed to its agent
	sessions map[string]*logSession   // by ID
}

// take removes and returns the requests waiting for host.
func (lh *logHub) take(host string) []api.LogRequest {
	lh.mu.Lock()
	defer lh.mu.Unlock()
	var out []api.LogRequest
	for _, s := range lh.pending[host] {
		out = append(out, s.req)
	}
	delete(lh.pending, host)
	return out
}

func (lh *logHub) waiting(host string) bool {
	lh.mu.Lock()
	defer lh.mu.Unlock()
	return len(lh.pending[host]) > 0
}

func (lh *logHub) forget(s *logSession) {
	lh.mu.Lock()
	defer lh.mu.Unlock()
	delete(lh.sessions, s.req.ID)
	p := lh.pending[s.host]
	for i, x := range p {
		if x == s {
			lh.pending[s.host] = append(p[:i:i], p[i+1:]...)
			break
		}
	}
	if len(lh.pending[s.host]) == 0 {
		delete(lh.pending, s.host)
	}
}

// Logs is the appliance's side of cairn host logs: it asks host's agent for the output of
// container (following it with follow, the last tail lines with tail > 0) and returns it as
// it comes. It fails with ErrNoAnswer when the agent does not begin within LogAnswerWait.
// Close the reader to stop.
func (h *Handler) Logs(ctx context.Context, host, container string, follow bool, tail int) (io.ReadCloser, error) {
	s := h.s
	var found bool
	if err := s.Store.View(ctx, func(tx state.Tx) (err error) { _, found, err = tx.Host(host); return err }); err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("no host named %s", host)
	}
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	pr, pw := io.Pipe()
	ls := &logSession{host: host, w: pw, started: make(chan struct{}),
		req: api.LogRequest{ID: hex.EncodeToString(id), Container: container, Follow: follow, Tail: tail}}
	s.logs.mu.Lock()
	if s.logs.pending == nil {
		s.logs.pending, s.logs.sessions = map[string][]*logSession{}, map[string]*logSession{}
	}
	s.logs.pending[host] = append(s.logs.pending[host], ls)
	s.logs.sessions[ls.req.ID] = ls
	s.logs.mu.Unlock()
	s.hosts.wake(host)
	select {
	case <-ls.started:
		return &logReader{PipeReader: pr, close: func() { s.logs.forget(ls) }}, nil
	case <-time.After(LogAnswerWait):
		err := fmt.Errorf("%w within %v: is host %s up, and its cairn-agent running? (cairn host show %s shows its last report)", ErrNoAnswer, LogAnswerWait, host, host)
		s.logs.forget(ls)
		_ = pr.CloseWithError(err)
		return nil, err
	case <-ctx.Done():
		s.logs.forget(ls)
		_ = pr.CloseWithError(ctx.Err())
		return nil, ctx.Err()
	}
}

type logReader struct {
	*io.PipeReader
	close func()
}

func (r *logReader) Close() error {
	r.close()
	return r.PipeReader.Close()
}

// logAnswer takes a host agent's POST of a log request's output and copies it to the operator.
func (s *server) logAnswer(w http.ResponseWriter, r *http.Request) {
	c := hostCall(r, api.CallLogs)
	if _, ok := s.hostAuthorized(w, r, c); !ok {
		return
	}
	s.logs.mu.Lock()
	ls, ok := s.logs.sessions[r.PathValue("id")]
	s.logs.mu.Unlock()
	if !ok || ls.host != r.PathValue("host") {
		fail(w, http.StatusNotFound, "no log request "+r.PathValue("id")+" for this host: the operator may have gone")
		return
	}
	ls.once.Do(func() { close(ls.started) })
	_, err := io.Copy(ls.w, r.Body)
	if err != nil && !errors.Is(err, io.ErrClosedPipe) {
		_ = ls.w.CloseWithError(fmt.Errorf("the host's answer broke off: %w", err))
	} else {
		_ = ls.w.Close()
	}
	if errors.Is(err, io.ErrClosedPipe) {
		fail(w, http.StatusGone, "the operator has gone")
		return
	}
	reply(w, http.StatusOK, nil)
}
