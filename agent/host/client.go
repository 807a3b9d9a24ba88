package host

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-appliance/cairn/agent/api"
)

// maxDesired is the largest Desired the agent reads: its config files travel in it.
const maxDesired = 64 << 20

// client calls the agent API as the host agent of one host.
type client struct {
	ha api.HostAgent
	hc *http.Client
}

// StatusError is an answer of the agent API other than 2xx.
type StatusError struct {
	Code    int
	Message string // the Error body's, or the start of the body
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("the appliance answered %d %s: %s", e.Code, http.StatusText(e.Code), e.Message)
}

func isUnauthorized(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == http.StatusUnauthorized
}

// desired long-polls the host's Desired: the answer comes when the appliance's generation is
// not generation, or after wait with the same one.
func (c *client) desired(ctx context.Context, generation int64, wait time.Duration) (*api.Desired, error) {
	q := url.Values{}
	q.Set("generation", strconv.FormatInt(generation, 10))
	q.Set("wait", strconv.Itoa(int(wait/time.Second)))
	// The appliance holds the answer up to wait: give it that and some more.
	ctx, cancel := context.WithTimeout(ctx, wait+30*time.Second)
	defer cancel()
	var d api.Desired
	if err := c.do(ctx, http.MethodGet, api.CallDesired, q, nil, "", &d, maxDesired); err != nil {
		return nil, err
	}
	return &d, nil
}

// status posts the host's status.
func (c *client) status(ctx context.Context, st api.HostStatus) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, api.CallStatus, nil, bytes.NewReader(b), "application/json", nil, api.MaxBody)
}

// logs posts the output of the log request id as it comes from body, until body ends or the
// appliance cuts the request (its operator went).
func (c *client) logs(ctx context.Context, id string, body io.Reader) error {
	return c.do(ctx, http.MethodPost, api.CallLogs+"/"+url.PathEscape(id), nil, body, "text/plain; charset=utf-8", nil, api.MaxBody)
}

func (c *client) do(ctx context.Context, method, call string, q url.Values, body io.Reader, contentType string, out any, limit int64) error {
	u := strings.TrimRight(c.ha.Server, "/") + api.HostPath(url.PathEscape(c.ha.Host), call)
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Authorization", "Bearer "+c.ha.Token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, u, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e api.Error
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if len(msg) > 300 {
			msg = msg[:300] + "…"
		}
		return &StatusError{Code: resp.StatusCode, Message: msg}
	}
	if int64(len(b)) > limit {
		return fmt.Errorf("%s %s: the answer is over %d bytes", method, u, limit)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, u, err)
	}
	return nil
}
