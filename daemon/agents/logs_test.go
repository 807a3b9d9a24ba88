package agents

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/agent/api"
)

// TestLogs: an operator's log request wakes the host agent's long poll, the agent POSTs the
// output, and the operator reads it as it comes.
func TestLogs(t *testing.T) {
	e := newHostEnv(t)
	h := e.handler
	agentDone := make(chan error, 1)
	go func() { // the host agent: long-poll, then answer the request it gets
		code, body := e.call(t, "GET", "web-01", api.CallDesired, "?generation=1&wait=30", e.web, nil)
		var d api.Desired
		if err := json.Unmarshal(body, &d); code != http.StatusOK || err != nil || len(d.Logs) != 1 {
			agentDone <- errors.New("the long poll brought no log request: " + string(body))
			return
		}
		lr := d.Logs[0]
		if lr.Container != "web" || !lr.Follow || lr.Tail != 5 {
			agentDone <- errors.New("log request " + string(body))
			return
		}
		req, _ := http.NewRequest("POST", e.srv.URL+api.HostPath("web-01", api.CallLogs)+"/"+lr.ID, strings.NewReader("GET / 200\nGET /healthz 200\n"))
		req.Header.Set("Authorization", "Bearer "+e.web)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		agentDone <- err
	}()
	rc, err := h.Logs(context.Background(), "web-01", "web", true, 5)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(b) != "GET / 200\nGET /healthz 200\n" {
		t.Errorf("logs = %q, %v", b, err)
	}
	if err := <-agentDone; err != nil {
		t.Fatal(err)
	}

	// Controls: another host's token cannot answer; no agent, no answer in time.
	code, _ := e.call(t, "POST", "web-01", api.CallLogs+"/nope", "", e.db, nil)
	if code != http.StatusUnauthorized {
		t.Errorf("another host's token answered a log request: %d", code)
	}
	defer func(d time.Duration) { LogAnswerWait = d }(LogAnswerWait)
	LogAnswerWait = 100 * time.Millisecond
	if _, err := h.Logs(context.Background(), "web-01", "web", false, 0); !errors.Is(err, ErrNoAnswer) {
		t.Errorf("a request no agent takes: %v", err)
	}
	if _, err := h.Logs(context.Background(), "ghost", "web", false, 0); err == nil || !strings.Contains(err.Error(), "no host named ghost") {
		t.Errorf("an unknown host: %v", err)
	}
}
