package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/agent/quadlet"
)

// fakeHost is systemd, podman and the quadlet validator of a host, in memory: it records
// every call that changes something, in order. Restarting cairn-NAME.service runs the
// container NAME (with the health the test set); stopping it removes the container, as
// quadlet's --rm does.
type fakeHost struct {
	t     *testing.T
	paths Paths

	mu         sync.Mutex
	calls      []string
	containers map[string]ContainerInfo // by name; labelled or not, List returns them all
	health     map[string]string        // container or container@digest -> health after a start
	keepOnStop bool                     // a stopped container stays (as one made without --rm)
	state      map[string]string        // container -> state after a start (default running)
	jobResult  map[string]string        // service -> result of its restart (default done)
	stopResult map[string]string
	pullErr    map[string]error // ref -> error
	validErr   error
	reloadErr  error
	restarts   map[string]int // service -> NRestarts
	onRestart  func(unit string)
	lists      int
}

func newFakeHost(t *testing.T, paths Paths) *fakeHost {
	return &fakeHost{
		t: t, paths: paths,
		containers: map[string]ContainerInfo{},
		health:     map[string]string{},
		state:      map[string]string{},
		jobResult:  map[string]string{},
		stopResult: map[string]string{},
		pullErr:    map[string]error{},
		restarts:   map[string]int{},
	}
}

func (f *fakeHost) record(format string, a ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, a...))
}

// take returns the calls recorded since the last take. Restarts run at once, so a run of
// restart calls is sorted.
func (f *fakeHost) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	for i := 0; i < len(c); {
		j := i
		for j < len(c) && strings.HasPrefix(c[j], "restart ") {
			j++
		}
		sort.Strings(c[i:j])
		i = max(j, i+1)
	}
	return c
}

func (f *fakeHost) validate(ctx context.Context, units []quadlet.Unit) error {
	var names []string
	for _, u := range units {
		names = append(names, u.Name)
	}
	f.record("validate %s", strings.Join(names, " "))
	return f.validErr
}

// unitFiles lists the unit directory as the generator would see it at this moment.
func (f *fakeHost) unitFiles() string {
	ents, _ := os.ReadDir(f.paths.UnitDir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return "[" + strings.Join(names, " ") + "]"
}

func (f *fakeHost) Reload(ctx context.Context) error {
	// The staging area must be empty by now: no old copy for anything to find.
	staged, _ := os.ReadDir(f.paths.StagingDir)
	f.record("reload %s staged=%d", f.unitFiles(), len(staged))
	return f.reloadErr
}

func containerOfService(svc string) string {
	return strings.TrimSuffix(strings.TrimPrefix(svc, quadlet.UnitPrefix), ".service")
}

func (f *fakeHost) Start(ctx context.Context, unit string) (string, error) {
	f.record("start %s", unit)
	return JobDone, nil
}

func (f *fakeHost) Restart(ctx context.Context, unit string) (string, error) {
	f.record("restart %s", unit)
	if f.onRestart != nil {
		f.onRestart(unit)
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	name := containerOfService(unit)
	b, err := os.ReadFile(filepath.Join(f.paths.UnitDir, quadlet.UnitPrefix+name+".container"))
	if err != nil {
		return "failed", nil // no unit file: systemd has no such unit
	}
	digest := ""
	for _, l := range strings.Split(string(b), "\n") {
		if i := strings.Index(l, "@sha256:"); strings.HasPrefix(l, "Image=") && i >= 0 {
			digest = l[i+1:]
		}
	}
	state := f.state[name]
	if state == "" {
		state = "running"
	}
	health, ok := f.health[name+"@"+digest]
	if !ok {
		health = f.health[name]
	}
	f.containers[name] = ContainerInfo{
		ID: "id-" + name, Name: name, State: state, Health: health, ImageDigest: digest,
		Labels: map[string]string{quadlet.OwnerLabel: quadlet.OwnerValue},
	}
	if r := f.jobResult[unit]; r != "" {
		return r, nil
	}
	return JobDone, nil
}

func (f *fakeHost) Stop(ctx context.Context, unit string) (string, error) {
	name := containerOfService(unit)
	_, err := os.Stat(filepath.Join(f.paths.UnitDir, quadlet.UnitPrefix+name+".container"))
	f.record("stop %s file=%v", unit, err == nil)
	f.mu.Lock()
	defer f.mu.Unlock()
	if r := f.stopResult[unit]; r != "" {
		return r, nil
	}
	if c, ok := f.containers[name]; ok && c.Owned() && !f.keepOnStop {
		delete(f.containers, name)
	}
	return JobDone, nil
}

func (f *fakeHost) Unit(ctx context.Context, unit string) (UnitState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return UnitState{LoadState: "loaded", ActiveState: "active", Restarts: f.restarts[unit]}, nil
}

func (f *fakeHost) Pull(ctx context.Context, ref string) error {
	f.record("pull %s", ref)
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pullErr[ref]
}

func (f *fakeHost) List(ctx context.Context) ([]ContainerInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	var out []ContainerInfo
	for _, c := range f.containers {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (f *fakeHost) Remove(ctx context.Context, id string) error {
	f.record("remove %s", id)
	f.mu.Lock()
	defer f.mu.Unlock()
	for n, c := range f.containers {
		if c.ID == id {
			delete(f.containers, n)
			return nil
		}
	}
	return errors.New("no such container")
}

func (f *fakeHost) Logs(ctx context.Context, container string, follow bool, tail int, w io.Writer) error {
	f.record("logs %s follow=%v tail=%d", container, follow, tail)
	_, err := fmt.Fprintf(w, "%s line 1\n%s line 2\n", container, container)
	return err
}

// fakeClock is a clock that only moves when something sleeps.
type fakeClock struct {
	mu     sync.Mutex
	t      time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.sleeps = append(c.sleeps, d)
	c.mu.Unlock()
	return ctx.Err()
}

// testEnv is an agent over a fake host in a temporary root.
type testEnv struct {
	t     *testing.T
	root  string
	paths Paths
	host  *fakeHost
	clock *fakeClock
	cfg   Config
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	root := t.TempDir()
	paths := DefaultPaths().Under(root)
	h := newFakeHost(t, paths)
	c := newFakeClock()
	return &testEnv{t: t, root: root, paths: paths, host: h, clock: c, cfg: Config{
		Paths: paths, Systemd: h, Podman: h, Validate: h.validate,
		Sleep: c.Sleep, Now: c.Now, AgentVersion: "test",
	}}
}

func (e *testEnv) agent() *Agent {
	e.t.Helper()
	a, err := New(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

const testRegistry = "10.20.0.1:5000"

func desired(gen int64, cs ...api.Container) *api.Desired {
	return &api.Desired{Host: "h1", Generation: gen, Registry: testRegistry, Containers: cs}
}

// ctr is a container whose image digest is 64 times d.
func ctr(name string, d byte) api.Container {
	return api.Container{
		Name: name, Role: "web", Image: "docker.io/library/nginx:1.27",
		Digest: "sha256:" + strings.Repeat(string(d), 64), Network: "bridge", Restart: "always",
	}
}

func withHealth(c api.Container) api.Container {
	c.Health = &api.Health{Command: []string{"/bin/check"}, Interval: "10s", Timeout: "5s", Retries: 2}
	return c
}

func withFile(c api.Container, target, data string) api.Container {
	c.Files = append(c.Files, api.File{Target: target, SHA256: sha256hex(data), Data: []byte(data)})
	return c
}

func sha256hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func ref(d byte) string { return "docker.io/library/nginx@sha256:" + strings.Repeat(string(d), 64) }

// snapshot is every file under the test's root with its content, for "nothing changed".
func (e *testEnv) snapshot() map[string]string {
	e.t.Helper()
	root := e.root
	m := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		m[strings.TrimPrefix(p, root)] = string(b)
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

func equalCalls(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: calls\n  %s\nwant\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}
