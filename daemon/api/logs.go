package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Logs is the appliance's side of cairn host logs (package daemon/agents): the output of a
// container of a host, as its agent sends it.
type Logs func(ctx context.Context, host, container string, follow bool, tail int) (io.ReadCloser, error)

// logs streams a container's logs: GET /api/v1/hosts/{name}/logs?container=C&follow=1&tail=N,
// as plain text, flushed as it comes. Logs may hold secrets: like backups, they are served to
// the appliance itself only.
func (s *server) logs(w http.ResponseWriter, r *http.Request) {
	if !loopbackPeer(r.RemoteAddr) {
		writeError(w, http.StatusForbidden, "container logs may hold secrets and are served to the appliance itself only: run cairn host logs on the appliance")
		return
	}
	if s.Logs == nil {
		writeError(w, http.StatusNotFound, "this daemon serves no host agents")
		return
	}
	q := r.URL.Query()
	container := q.Get("container")
	if container == "" {
		writeError(w, http.StatusBadRequest, "container is required: cairn host show NAME lists the host's containers")
		return
	}
	tail := 0
	if v := q.Get("tail"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("tail %q: expected a number of lines, 0 or more", v))
			return
		}
		tail = n
	}
	follow := q.Get("follow") == "1" || q.Get("follow") == "true"
	rc, err := s.Logs(r.Context(), r.PathValue("name"), container, follow, tail)
	if err != nil {
		code := http.StatusBadGateway
		if strings.HasPrefix(err.Error(), "no host named") {
			code = http.StatusNotFound
		}
		writeError(w, code, err.Error())
		return
	}
	defer rc.Close()
	go func() { <-r.Context().Done(); _ = rc.Close() }() // the operator went: stop the host
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	rc2 := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := rc.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			_ = rc2.Flush()
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && r.Context().Err() == nil {
				fmt.Fprintf(w, "\ncairn: %v\n", err)
			}
			return
		}
	}
}

// Logs streams the logs of container on host into w until the host's agent ends them (or,
// following, until ctx ends).
func (c *Client) Logs(ctx context.Context, host, container string, follow bool, tail int, w io.Writer) error {
	q := url.Values{"container": {container}}
	if follow {
		q.Set("follow", "1")
	}
	if tail > 0 {
		q.Set("tail", strconv.Itoa(tail))
	}
	path := "/api/v1/hosts/" + url.PathEscape(host) + "/logs?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return fmt.Errorf("asking the daemon at %s: %w", c.shown, err)
	}
	hc := *c.hc
	hc.Timeout = 0 // a followed log ends when the operator says so
	resp, err := hc.Do(req)
	if err != nil {
		return c.unanswered(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c.statusError(resp)
	}
	if _, err := io.Copy(w, resp.Body); err != nil && ctx.Err() == nil {
		return fmt.Errorf("reading the logs from the daemon at %s: %w", c.shown, err)
	}
	return nil
}
