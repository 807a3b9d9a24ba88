package api

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cairn-appliance/cairn/daemon/state"
)

func TestLogs(t *testing.T) {
	var asked []string
	logs := func(_ context.Context, host, container string, follow bool, tail int) (io.ReadCloser, error) {
		asked = append(asked, host+" "+container)
		if host == "down-01" {
			return nil, errors.New("the host agent did not answer within 30s")
		}
		if !follow || tail != 10 {
			return nil, errors.New("follow and tail were lost on the way")
		}
		return io.NopCloser(strings.NewReader("line 1\nline 2\n")), nil
	}
	h, err := New(Config{Store: state.NewMemory(0), Current: func() Current { return Current{} }, Logs: logs})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	c, err := NewClient(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := c.Logs(context.Background(), "web-01", "web", true, 10, &out); err != nil || out.String() != "line 1\nline 2\n" {
		t.Errorf("logs = %q, %v", out.String(), err)
	}
	var se *StatusError
	if err := c.Logs(context.Background(), "down-01", "web", true, 10, &out); !errors.As(err, &se) || se.Code != 502 || !strings.Contains(se.Message, "did not answer") {
		t.Errorf("a host that does not answer: %v", err)
	}
	if err := c.Logs(context.Background(), "web-01", "", false, 0, &out); !errors.As(err, &se) || se.Code != 400 {
		t.Errorf("no container: %v", err)
	}
	if len(asked) != 2 {
		t.Errorf("asked %v", asked)
	}
}
