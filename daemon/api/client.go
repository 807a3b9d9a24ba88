package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cairn-appliance/cairn/daemon/state"
)

// Client asks a running daemon's JSON API, as the CLI does from the appliance or from an
// operator's machine. It only reads, as the API does.
type Client struct {
	base  string // scheme://host[:port][/prefix], without a trailing slash
	shown string // base without a password, for messages
	hc    *http.Client
}

// DefaultTimeout bounds each call of a Client made without an http.Client of its own.
const DefaultTimeout = 10 * time.Second

// maxAnswer bounds what a Client reads of one answer; the hosts of a large site with their
// full specs stay well below it.
const maxAnswer = 64 << 20

// NewClient returns a client of the daemon whose API is at base, a URL such as
// http://appliance:5000 (a path prefix is kept, for a daemon behind a proxy). hc nil means an
// http.Client with DefaultTimeout.
func NewClient(base string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("daemon address %q: expected a URL such as http://appliance:5000", base)
	}
	if hc == nil {
		hc = &http.Client{Timeout: DefaultTimeout}
	}
	return &Client{base: strings.TrimRight(u.String(), "/"), shown: strings.TrimRight(u.Redacted(), "/"), hc: hc}, nil
}

// StatusError is an answer of the daemon other than 200 OK: its status and what it said.
type StatusError struct {
	Code    int    // e.g. 404
	Status  string // e.g. "404 Not Found"
	Message string // the body of the answer, trimmed and cut short
}

func (e *StatusError) Error() string {
	if e.Message == "" {
		return "the daemon answered " + e.Status
	}
	return "the daemon answered " + e.Status + ": " + e.Message
}

// maxMessage bounds how much of an error answer a StatusError keeps: a proxy's HTML page is
// not worth printing whole.
const maxMessage = 1 << 10

// Status returns the daemon's summary: the site it runs, its generations and its hosts by phase.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.get(ctx, "/api/v1/status", &st)
	return st, err
}

// Hosts returns every host the daemon knows, sorted by name, each with its last event.
func (c *Client) Hosts(ctx context.Context) ([]Host, error) {
	var hs []Host
	err := c.get(ctx, "/api/v1/hosts", &hs)
	return hs, err
}

// Host returns one host with its recent events. A host the daemon does not know is a
// *StatusError with Code 404.
func (c *Client) Host(ctx context.Context, name string) (HostDetail, error) {
	var d HostDetail
	err := c.get(ctx, "/api/v1/hosts/"+url.PathEscape(name), &d)
	return d, err
}

// Recorded returns the hosts as the daemon recorded them, with the spec and containers it last
// applied to each: what plan.Compute diffs a site against (cairn site plan --server). The
// records carry no token hashes; the API never shows them.
func (c *Client) Recorded(ctx context.Context) ([]state.Host, error) {
	var hs []Host
	if err := c.get(ctx, "/api/v1/hosts?full=1", &hs); err != nil {
		return nil, err
	}
	recorded := make([]state.Host, 0, len(hs))
	for _, h := range hs {
		recorded = append(recorded, h.record())
	}
	return recorded, nil
}

// record is the inverse of view: the state a host's view shows, without the secrets it never
// showed.
func (h Host) record() state.Host {
	return state.Host{Name: h.Name, MAC: h.MAC, IP: h.IP, Phase: h.Phase, Reason: h.Reason, Progress: h.Progress, Message: h.Message,
		Provision: h.Provision, ContainersGeneration: h.ContainersGeneration, Updated: h.Updated,
		Spec: h.Spec, Containers: h.Containers}
}

// Backup streams a backup archive of the appliance (package daemon/backup) into w and returns
// how many bytes it wrote. The daemon serves backups to the appliance itself only: asked from
// elsewhere it answers 403, a *StatusError. The call is bounded by ctx alone, not by
// DefaultTimeout: an archive with a large upper store takes a while. It does not check the
// archive: a daemon that fails midway cuts it short, which backup.Verify tells.
func (c *Client) Backup(ctx context.Context, w io.Writer) (int64, error) {
	const path = "/api/v1/backup"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return 0, fmt.Errorf("asking the daemon at %s: %w", c.shown, err)
	}
	hc := *c.hc
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return 0, c.unanswered(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, c.statusError(resp)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("copying the backup from the daemon at %s: %w", c.shown, err)
	}
	return n, nil
}

// statusError reads the error answer of a call that streams its answer.
func (c *Client) statusError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	msg := strings.TrimSpace(string(body))
	var e ErrorAnswer
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	if len(msg) > maxMessage {
		msg = strings.ToValidUTF8(msg[:maxMessage], "") + " …"
	}
	return &StatusError{Code: resp.StatusCode, Status: resp.Status, Message: msg}
}

// Unreachable reports whether err says that no daemon answered at all (nothing listens at the
// address, or no route to it), as opposed to an answer that was an error.
func Unreachable(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// unanswered is the error of a call that got no answer.
func (c *Client) unanswered(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("asking the daemon at %s: %w", c.shown, ctx.Err())
	}
	return fmt.Errorf("asking the daemon at %s: %w (is cairn daemon running? systemctl status cairn)", c.shown, err)
}

// get fetches path (with its query) into v.
func (c *Client) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return fmt.Errorf("asking the daemon at %s: %w", c.shown, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.unanswered(ctx, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return fmt.Errorf("reading the daemon's answer to GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(body))
		if len(msg) > maxMessage {
			msg = strings.ToValidUTF8(msg[:maxMessage], "") + " …"
		}
		return &StatusError{Code: resp.StatusCode, Status: resp.Status, Message: msg}
	}
	if len(body) > maxAnswer {
		return fmt.Errorf("the daemon's answer to GET %s is larger than %d MiB", path, maxAnswer>>20)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decoding the answer to GET %s: %w (is %s a cairn daemon's API?)", path, err, c.shown)
	}
	return nil
}
