package host

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"testing"
	"time"
)

// The samples in testdata follow podman 5.4's JSON: entities.ListContainer for podman ps
// --format json, define.InspectContainerData for podman container inspect.
func TestPodmanList(t *testing.T) {
	ps, err := os.ReadFile("testdata/podman5-ps.json")
	if err != nil {
		t.Fatal(err)
	}
	inspect, err := os.ReadFile("testdata/podman5-inspect.json")
	if err != nil {
		t.Fatal(err)
	}
	var calls [][]string
	p := &PodmanCLI{run: func(ctx context.Context, args ...string) ([]byte, error) {
		calls = append(calls, args)
		switch args[0] {
		case "ps":
			return ps, nil
		case "container":
			return inspect, nil
		}
		return nil, errors.New("unexpected")
	}}
	got, err := p.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"ps", "--all", "--filter", "label=io.cairn.owner", "--format", "json"}; !slices.Equal(calls[0], want) {
		t.Errorf("podman %v, want %v", calls[0], want)
	}
	if len(calls) != 2 || !slices.Equal(calls[1][:2], []string{"container", "inspect"}) || len(calls[1]) != 4 {
		t.Fatalf("podman calls %v, want ps, then one inspect of both IDs", calls)
	}
	if len(got) != 2 {
		t.Fatalf("List() = %d containers, want 2", len(got))
	}
	db, web := got[0], got[1]
	wantStarted := time.Date(2026, 12, 1, 10, 0, 1, 38466254, time.UTC)
	switch {
	case web.Name != "web" || web.State != "running" || web.Health != "healthy" || !web.Owned():
		t.Errorf("web = %+v", web)
	case web.ImageDigest != "sha256:0f3a6bd0ce4e0e2ac4d81ca0fb3a8ab5b8b7c8ea5c4e7ef3c8f0e1d2c3b4a596":
		t.Errorf("web's digest = %s, want the manifest digest (ImageDigest), not the image ID", web.ImageDigest)
	case !web.Started.Equal(wantStarted):
		t.Errorf("web started %v, want %v", web.Started, wantStarted)
	case db.Name != "db" || db.State != "exited" || db.Health != "" || db.Restarts != 2:
		t.Errorf("db = %+v", db)
	}
}

func TestPodmanListNone(t *testing.T) {
	n := 0
	p := &PodmanCLI{run: func(ctx context.Context, args ...string) ([]byte, error) {
		n++
		return []byte("[]\n"), nil
	}}
	got, err := p.List(context.Background())
	if err != nil || len(got) != 0 || n != 1 {
		t.Errorf("List() = %v, %v after %d calls; want none after ps alone", got, err, n)
	}
}

func TestPodmanListRace(t *testing.T) {
	// A container gone between ps and inspect: podman inspect fails but prints the others.
	ps, _ := os.ReadFile("testdata/podman5-ps.json")
	inspect, _ := os.ReadFile("testdata/podman5-inspect.json")
	var all []json.RawMessage
	if err := json.Unmarshal(inspect, &all); err != nil {
		t.Fatal(err)
	}
	one, _ := json.Marshal(all[:1])
	p := &PodmanCLI{run: func(ctx context.Context, args ...string) ([]byte, error) {
		if args[0] == "ps" {
			return ps, nil
		}
		return one, errors.New("podman container: exit status 125: Error: no such container")
	}}
	if got, err := p.List(context.Background()); err != nil || len(got) != 1 || got[0].Name != "web" {
		t.Errorf("List() = %d containers, %v; want what inspect printed", len(got), err)
	}
	p.run = func(ctx context.Context, args ...string) ([]byte, error) {
		if args[0] == "ps" {
			return ps, nil
		}
		return nil, errors.New("podman container: exit status 125: Error: no such container")
	}
	if _, err := p.List(context.Background()); err == nil {
		t.Error("List() succeeded with nothing from inspect")
	}
}

func TestParseBadJSON(t *testing.T) {
	for _, b := range []string{"", "{", `[{"Names":["x"]}]`} {
		if _, err := parsePS([]byte(b)); err == nil {
			t.Errorf("parsePS(%q) succeeded", b)
		}
	}
	for _, b := range []string{"", "null x", `[{"Id":"x"}]`} {
		if _, err := parseInspect([]byte(b)); err == nil {
			t.Errorf("parseInspect(%q) succeeded", b)
		}
	}
}

func TestPodmanPullAndRemove(t *testing.T) {
	var calls [][]string
	p := &PodmanCLI{run: func(ctx context.Context, args ...string) ([]byte, error) {
		calls = append(calls, args)
		return nil, nil
	}}
	_ = p.Pull(context.Background(), "docker.io/library/nginx@sha256:00")
	_ = p.Remove(context.Background(), "abc")
	want := [][]string{{"pull", "--quiet", "docker.io/library/nginx@sha256:00"}, {"rm", "--force", "--ignore", "abc"}}
	if !slices.EqualFunc(calls, want, slices.Equal) {
		t.Errorf("podman calls %v, want %v", calls, want)
	}
}

func FuzzParseInspect(f *testing.F) {
	b, _ := os.ReadFile("testdata/podman5-inspect.json")
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseInspect(b)
	})
}
