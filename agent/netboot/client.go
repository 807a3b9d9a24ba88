package netboot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/cairn-appliance/cairn/agent/api"
)

// client calls the agent API for one machine.
type client struct {
	base, mac, token string
	hc               *http.Client
	tries            int
	delay            time.Duration
	say              func(string, ...any)
}

// StatusError is an answer of the agent API other than 2xx.
type StatusError struct {
	Code    int
	Message string // the Error body's, or the start of the body
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("the daemon answered %d %s: %s", e.Code, http.StatusText(e.Code), e.Message)
}

func isUnauthorized(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == http.StatusUnauthorized
}

func (c *client) inventory(ctx context.Context, inv api.Inventory) (api.Registered, error) {
	var reg api.Registered
	return reg, c.call(ctx, http.MethodPost, api.CallInventory, inv, &reg)
}

func (c *client) plan(ctx context.Context) (api.ProvisionPlan, error) {
	var p api.ProvisionPlan
	return p, c.call(ctx, http.MethodGet, api.CallPlan, nil, &p)
}

func (c *client) failed(ctx context.Context, f api.Failed) error {
	return c.call(ctx, http.MethodPost, api.CallFailed, f, nil)
}

// call sends one request, again when it gets no answer or a 5xx (the appliance restarting,
// the network settling), at most c.tries times. A 4xx answer is final.
func (c *client) call(ctx context.Context, method, name string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	url := c.base + api.Path(c.mac, name)
	var err error
	for try := 1; ; try++ {
		err = c.once(ctx, method, url, body, out)
		var se *StatusError
		if err == nil || errors.As(err, &se) && se.Code < 500 || try >= c.tries || ctx.Err() != nil {
			return err
		}
		c.say("cairn-agent: %s %s: %v; trying again in %s (try %d of %d)", method, url, err, c.delay, try, c.tries)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(c.delay):
		}
	}
}

func (c *client) once(ctx context.Context, method, url string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, api.MaxBody))
	if err != nil {
		return err
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
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("reading the answer of %s: %w", url, err)
	}
	return nil
}

func (c *client) progress(ctx context.Context, p api.Progress) error {
	return c.call(ctx, http.MethodPost, api.CallProgress, p, nil)
}

func (c *client) done(ctx context.Context, d api.Done) error {
	return c.call(ctx, http.MethodPost, api.CallDone, d, nil)
}
