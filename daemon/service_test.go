package daemon

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// svc is a service made of a function.
type svc func(ctx context.Context) error

func (f svc) Run(ctx context.Context) error { return f(ctx) }

// untilDone is a well-behaved service: it serves until ctx ends and says why it stopped.
func untilDone(stopped chan<- string, name string) svc {
	return func(ctx context.Context) error {
		<-ctx.Done()
		stopped <- name
		return ctx.Err()
	}
}

func TestServicesStopCleanlyOnCancel(t *testing.T) {
	stopped := make(chan string, 3)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runServices(ctx, named{"a", untilDone(stopped, "a")}, named{"b", untilDone(stopped, "b")}, named{"c", untilDone(stopped, "c")})
	}()
	select {
	case err := <-done:
		t.Fatalf("runServices returned %v before its context ended", err)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("runServices after cancel = %v, want nil (a clean stop)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("runServices did not return within 5s of cancel")
	}
	if len(stopped) != 3 {
		t.Errorf("%d of 3 services stopped", len(stopped))
	}
}

func TestFailingServiceStopsTheOthers(t *testing.T) {
	boom := errors.New("boom")
	stopped := make(chan string, 2)
	failing := svc(func(context.Context) error {
		time.Sleep(20 * time.Millisecond)
		return boom
	})
	err := runServices(context.Background(), named{"a", untilDone(stopped, "a")}, named{"dhcp", failing}, named{"b", untilDone(stopped, "b")})
	if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "dhcp: ") {
		t.Errorf("runServices = %v, want the failing service's error under its name", err)
	}
	if len(stopped) != 2 {
		t.Errorf("%d of 2 other services were stopped", len(stopped))
	}
	// A service that returns nil while the daemon runs has failed too.
	err = runServices(context.Background(), named{"a", untilDone(make(chan string, 1), "a")}, named{"quitter", svc(func(context.Context) error { return nil })})
	if err == nil || !strings.Contains(err.Error(), "quitter stopped by itself") {
		t.Errorf("runServices with a service returning nil = %v, want an error naming it", err)
	}
}

// TestHTTPServerStops: the registry's server stops on cancel with context.Canceled, and a
// listener that breaks is a failure, not a clean stop.
func TestHTTPServerStops(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := newHTTPServer(ln, http.NotFoundHandler())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	if resp, err := http.Get("http://" + ln.Addr().String() + "/"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run after cancel = %v, want context.Canceled", err)
	}

	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_ = ln2.Close()
	err = runServices(context.Background(), named{"registry", newHTTPServer(ln2, http.NotFoundHandler())})
	if err == nil || !strings.HasPrefix(err.Error(), "registry: serving on") {
		t.Errorf("a server whose listener is closed = %v, want a registry error", err)
	}
}
