package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/daemon/plan"
	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/site"
)

func client(t *testing.T, base string) *Client {
	t.Helper()
	c, err := NewClient(base, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewClient(t *testing.T) {
	for _, tt := range []struct {
		base string
		ok   bool
	}{
		{"http://appliance:5000", true},
		{"http://appliance:5000/", true},
		{"https://10.20.0.1/cairn", true},
		{"", false},
		{"appliance:5000", false},
		{"appliance", false},
		{"ftp://appliance:5000", false},
		{"http://", false},
		{"http://appliance:5000/?x=1", false},
		{"http://[::1", false},
	} {
		_, err := NewClient(tt.base, nil)
		if (err == nil) != tt.ok {
			t.Errorf("NewClient(%q) = %v, want ok %v", tt.base, err, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "expected a URL such as http://appliance:5000") {
			t.Errorf("NewClient(%q) = %v, want it to say what to give", tt.base, err)
		}
	}
}

func TestClient(t *testing.T) {
	ctx := context.Background()
	c := client(t, fixture(t, "hosts/x.toml:1:1: broken").URL+"/")
	st, err := c.Status(ctx)
	if err != nil || st.Site != "rack1" || st.Hosts != 20 || st.Generation.Applied != 7 || st.LoadError == "" {
		t.Errorf("Status() = %+v, %v", st, err)
	}
	hosts, err := c.Hosts(ctx)
	if err != nil || len(hosts) != 20 || hosts[3].Phase != state.Provisioning || hosts[3].LastEvent == nil {
		t.Errorf("Hosts() = %+v, %v", hosts, err)
	}
	d, err := c.Host(ctx, "node-06")
	if err != nil || d.Phase != state.Failed || d.Reason != "disk /dev/sda not found" || len(d.Events) != 1 {
		t.Errorf("Host(node-06) = %+v, %v", d, err)
	}
	_, err = c.Host(ctx, "no/such host")
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusNotFound || !strings.Contains(se.Message, `no host named "no/such host"`) {
		t.Errorf("Host of an unknown host = %v, want a 404 that names it", err)
	}
}

// TestClientRecorded plans the example site against what a daemon recorded, read through the
// client: the records come back whole, and the plan sees only the host not applied yet.
func TestClientRecorded(t *testing.T) {
	s, err := site.Load("../../examples/site")
	if err != nil {
		t.Fatal(err)
	}
	desired, err := plan.Desire(s)
	if err != nil {
		t.Fatal(err)
	}
	st := state.NewMemory(0)
	var want []state.Host
	updated := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	err = st.Update(context.Background(), func(tx state.Tx) error {
		for _, h := range s.Hosts {
			if h.Name == "web-02" {
				continue // not applied yet
			}
			d := desired[h.Name]
			r := state.Host{Name: h.Name, MAC: h.MAC.String(), IP: "10.20.0.99", Phase: state.Ready, Provision: h.Provision,
				Spec: d.Spec, Containers: d.Containers, ContainersGeneration: 3, Updated: updated}
			if err := tx.PutHost(r); err != nil {
				return err
			}
			want = append(want, r)
			r.HostTokenHash = "secret-hash"
			if err := tx.PutHost(r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{Store: st, Current: func() Current { return Current{Site: s} }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	got, err := client(t, srv.URL).Recorded(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("Recorded() = %d hosts, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if !g.Updated.Equal(w.Updated) {
			t.Errorf("Recorded()[%d].Updated = %v, want %v", i, g.Updated, w.Updated)
		}
		g.Updated, w.Updated = time.Time{}, time.Time{}
		if !jsonEqual(g.Spec, w.Spec) || !jsonEqual(g.Containers, w.Containers) {
			t.Errorf("Recorded()[%d] spec or containers differ:\n%s %s\nwant\n%s %s", i, g.Spec, g.Containers, w.Spec, w.Containers)
		}
		g.Spec, g.Containers, w.Spec, w.Containers = nil, nil, nil, nil
		if !reflect.DeepEqual(g, w) {
			t.Errorf("Recorded()[%d] = %+v, want %+v", i, g, w)
		}
	}
	p, err := plan.Compute(s, got)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != 1 || p.Items[0].Host != "web-02" {
		t.Errorf("plan against Recorded() = %+v, want only web-02 added", p.Items)
	}
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

// TestClientErrors is the control: a daemon that is not there, that fails, or a server that
// is no cairn daemon each give an error that says which and what to do.
func TestClientErrors(t *testing.T) {
	ctx := context.Background()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	serve := func(code int, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(code)
			_, _ = w.Write([]byte(body))
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	for _, tt := range []struct {
		name, base string
		code       int // of a *StatusError; 0: none
		want       []string
	}{
		{"no daemon", closed.URL, 0, []string{"asking the daemon at " + closed.URL, "is cairn daemon running? systemctl status cairn"}},
		{"500", serve(500, "reading the state: disk full\n"), 500, []string{"the daemon answered 500 Internal Server Error: reading the state: disk full"}},
		{"503 without a body", serve(503, ""), 503, []string{"the daemon answered 503 Service Unavailable"}},
		{"a long page", serve(502, "<html>"+strings.Repeat("x", 5000)), 502, []string{"502 Bad Gateway: <html>xxx", " …"}},
		{"garbage", serve(200, "<html>hello</html>"), 0, []string{"decoding the answer to GET /api/v1/status", "is http://127.0.0.1", "a cairn daemon's API?"}},
		{"the wrong JSON", serve(200, `["a list"]`), 0, []string{"decoding the answer to GET /api/v1/status", "a cairn daemon's API?"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client(t, tt.base).Status(ctx)
			if err == nil {
				t.Fatal("Status() = nil error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Status() = %q, want it to contain %q", err, w)
				}
			}
			var se *StatusError
			if got := errors.As(err, &se); got != (tt.code != 0) || (got && se.Code != tt.code) {
				t.Errorf("Status() = %#v, want a StatusError with code %d", err, tt.code)
			}
			if len(err.Error()) > 2000 {
				t.Errorf("Status() = an error of %d bytes", len(err.Error()))
			}
		})
	}

	ctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err := client(t, closed.URL).Hosts(ctx)
	if !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "is cairn daemon running") {
		t.Errorf("Hosts() cancelled = %v, want context.Canceled without the hint", err)
	}
}

// TestClientPrefix reaches a daemon behind a proxy that serves it under a path.
func TestClientPrefix(t *testing.T) {
	st := state.NewMemory(0)
	h, err := New(Config{Store: st, Current: func() Current { return Current{} }})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/cairn/", http.StripPrefix("/cairn", h))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	hosts, err := client(t, srv.URL+"/cairn/").Hosts(context.Background())
	if err != nil || len(hosts) != 0 {
		t.Errorf("Hosts() behind /cairn = %v, %v", hosts, err)
	}
}
