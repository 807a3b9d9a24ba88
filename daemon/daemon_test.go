package daemon

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	agentapi "github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/airgap/airgaptest"
	"github.com/cairn-appliance/cairn/appliance"
	"github.com/cairn-appliance/cairn/appliance/appliancetest"
	"github.com/cairn-appliance/cairn/site"
)

// recorder is a Notifier that keeps what it is told.
type recorder struct {
	mu       sync.Mutex
	states   []string
	watchdog time.Duration
	notify   chan string
}

func newRecorder(wd time.Duration) *recorder {
	return &recorder{watchdog: wd, notify: make(chan string, 100)}
}

func (r *recorder) Notify(state string) (bool, error) {
	r.mu.Lock()
	r.states = append(r.states, state)
	r.mu.Unlock()
	select {
	case r.notify <- state:
	default:
	}
	return true, nil
}

func (r *recorder) WatchdogInterval() time.Duration { return r.watchdog }

func (r *recorder) waitFor(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case s := <-r.notify:
			if strings.HasPrefix(s, prefix) {
				return s
			}
		case <-timeout:
			t.Fatalf("systemd was never told %q; it was told %q", prefix, r.states)
		}
	}
}

// storeArtifacts is how many artifacts makeStore's store holds, as the status line says it.
func storeArtifacts(t *testing.T) string {
	s, err := site.Load("../examples/site")
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(1 + len(s.Images()))
}

// makeStore seals a store into dir with an image example.com/app:1, whose digest it returns,
// and one under each image name the example site uses, so that the site resolves.
func makeStore(t *testing.T, dir string) string {
	t.Helper()
	s, err := site.Load("../examples/site")
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"example.com/app:1"}
	for _, img := range s.Images() {
		names = append(names, img.String())
	}
	return airgaptest.SealedStoreOf(t, dir, names...)[0].String()
}

// start runs the daemon and returns the registry address from its ready line.
func start(t *testing.T, cfg Config, opts Options) (addr string, stop func() error) {
	t.Helper()
	pr, pw := io.Pipe()
	opts.Stdout = pw
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, opts); pw.Close() }()
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l, ok := <-lines:
		if !ok {
			cancel()
			t.Fatalf("daemon printed no ready line: %v", <-done)
		}
		if !strings.HasPrefix(l, ReadyPrefix+" registry=") {
			t.Fatalf("first line = %q, want it to start %q", l, ReadyPrefix)
		}
		addr = strings.TrimPrefix(strings.Fields(l)[2], "registry=")
	case <-time.After(20 * time.Second):
		t.Fatal("no ready line within 20s")
	}
	go func() {
		for range lines {
		}
	}()
	return addr, func() error { cancel(); return <-done }
}

func TestRunServesStoreAndTalksToSystemd(t *testing.T) {
	store := t.TempDir()
	want := makeStore(t, store)
	n := newRecorder(30 * time.Millisecond)
	hup := make(chan os.Signal, 1)
	addr, stop := start(t, Config{Store: store, Listen: "127.0.0.1:0"}, Options{Notifier: n, Reload: hup})

	ready := n.waitFor(t, "READY=1")
	if !strings.Contains(ready, "\nSTATUS=ephemeral: state is lost at reboot (no data_dir); serving "+storeArtifacts(t)+" artifacts from "+store) {
		t.Errorf("READY notification = %q, want a STATUS line naming the store", ready)
	}
	ref, err := name.ParseReference(addr+"/example.com/app:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(ref)
	if err != nil {
		t.Fatalf("pulling through the daemon: %v", err)
	}
	if desc.Digest.String() != want {
		t.Errorf("digest through the daemon = %s, want %s", desc.Digest, want)
	}
	// The watchdog is fed because the registry answers its health check.
	n.waitFor(t, "WATCHDOG=1")
	hup <- os.Interrupt
	n.waitFor(t, "RELOADING=1")
	n.waitFor(t, "READY=1")
	if err := stop(); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if last := n.states[len(n.states)-1]; last != "STOPPING=1" {
		t.Errorf("last notification = %q, want STOPPING=1", last)
	}
}

func TestRunFindsStoreOnMedium(t *testing.T) {
	medium := t.TempDir()
	makeStore(t, filepath.Join(medium, "cairn", "store"))
	var gotLabel string
	find := func(_ context.Context, c appliance.MediumConfig) (string, error) {
		gotLabel = c.Label
		return medium, nil
	}
	cfg := DefaultConfig()
	// The store from the medium, and the site and state in the test's own directory, never
	// this machine's /var/lib/cairn.
	var0 := t.TempDir()
	cfg.Listen, cfg.SiteDir, cfg.State, cfg.DataDir = "127.0.0.1:0", filepath.Join(var0, "site"), filepath.Join(var0, "state.db"), var0
	_, stop := start(t, cfg, Options{Notifier: newRecorder(0), FindMedium: find, Cmdline: "boot=live cairn.label=MY_SITE_1 quiet"})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if gotLabel != "MY_SITE_1" {
		t.Errorf("medium label = %q, want MY_SITE_1 from the kernel command line", gotLabel)
	}
}

func TestRunRefusesMediumWithoutStore(t *testing.T) {
	medium := t.TempDir()
	find := func(context.Context, appliance.MediumConfig) (string, error) { return medium, nil }
	cfg := DefaultConfig()
	cfg.Listen, cfg.SiteDir = "127.0.0.1:0", ""
	err := Run(context.Background(), cfg, Options{Notifier: newRecorder(0), FindMedium: find, Cmdline: "x"})
	if err == nil || !strings.Contains(err.Error(), "holds no store at cairn/store") {
		t.Fatalf("Run(medium without store) = %v, want an error saying the medium holds no store", err)
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "daemon.toml")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg, err := LoadConfig(write("listen = \"127.0.0.1:5001\"\n"))
	if err != nil || cfg.Listen != "127.0.0.1:5001" || cfg.MediumLabel != "CAIRN" || cfg.Store != "cairn/store" {
		t.Fatalf("LoadConfig(listen only) = %+v, %v, want defaults with listen replaced", cfg, err)
	}
	for _, tc := range []struct{ in, want string }{
		{"lisen = \":5000\"\n", "lisen"},
		{"listen = \n", "daemon.toml:1:"},
		{"listen = \"\"\n", "listen is empty"},
		{"store = \"\"\n", "store is empty"},
	} {
		if _, err := LoadConfig(write(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadConfig(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
	// The appliance's own config file parses.
	if _, err := LoadConfig("../appliance/recipe/overlay/etc/cairn/daemon.toml"); err != nil {
		t.Errorf("the appliance's daemon.toml: %v", err)
	}
}

// TestRunConvergesSite runs the daemon with a site: on first start it seeds the site
// directory from the medium's seed, applies it before READY=1, and serves the operator API
// beside the registry on one port.
func TestRunConvergesSite(t *testing.T) {
	store := t.TempDir()
	makeStore(t, store)
	var0 := t.TempDir()
	cfg := Config{Store: store, Site: mustAbs(t, "../examples/site"), Listen: "127.0.0.1:0",
		SiteDir: filepath.Join(var0, "site"), State: filepath.Join(var0, "state.db"), DataDir: var0}
	n := newRecorder(0)
	hup := make(chan os.Signal, 1)
	addr, stop := start(t, cfg, Options{Notifier: n, Version: "test", Reload: hup})
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	ready := n.waitFor(t, "READY=1")
	if !strings.Contains(ready, "STATUS=ephemeral: state is lost at reboot (no data disk at "+var0+"); site rack1 generation 1; 3 hosts (3 pending); serving "+storeArtifacts(t)+" artifacts from "+store) {
		t.Errorf("READY notification = %q, want the site's status and the store's", ready)
	}
	// After a reload, systemctl status still says what is served.
	hup <- os.Interrupt
	n.waitFor(t, "RELOADING=1")
	if st := n.waitFor(t, "STATUS="); !strings.Contains(st, "generation 2; 3 hosts (3 pending); serving "+storeArtifacts(t)+" artifacts from "+store) {
		t.Errorf("STATUS after a reload = %q, want the new generation and the store", st)
	}
	if _, err := os.Stat(filepath.Join(cfg.SiteDir, "hosts", "web-01.toml")); err != nil {
		t.Errorf("the site seed was not copied: %v", err)
	}
	resp, err := http.Get("http://" + addr + "/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), `"site": "rack1"`) || !strings.Contains(string(body), `"pending": 3`) ||
		!strings.Contains(string(body), `"ephemeral": "ephemeral: state is lost at reboot`) {
		t.Errorf("/api/v1/status = %s", body)
	}
	if r, err := http.Get("http://" + addr + "/v2/"); err != nil || r.StatusCode != http.StatusOK {
		t.Errorf("the registry beside the API: %v %v", r, err)
	} else {
		r.Body.Close()
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestRunOnDataDisk: with its data directory on a disk of its own (a loop device here) the
// daemon is not ephemeral, and says nothing of it.
func TestRunOnDataDisk(t *testing.T) {
	data, dev := appliancetest.DataDisk(t)
	store := t.TempDir()
	makeStore(t, store)
	cfg := Config{Store: store, Site: mustAbs(t, "../examples/site"), Listen: "127.0.0.1:0",
		SiteDir: filepath.Join(data, "site"), State: filepath.Join(data, "state.db"), DataDir: data}
	n := newRecorder(0)
	addr, stop := start(t, cfg, Options{Notifier: n})
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	if ready := n.waitFor(t, "READY=1"); !strings.Contains(ready, "STATUS=site rack1 generation 1;") || strings.Contains(ready, "ephemeral") {
		t.Errorf("READY notification = %q, want the site's status, not ephemeral (data disk %s)", ready, dev)
	}
	resp, err := http.Get("http://" + addr + "/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if body, _ := io.ReadAll(resp.Body); strings.Contains(string(body), "ephemeral") {
		t.Errorf("/api/v1/status on a data disk = %s", body)
	}
}

// TestRestartRedoesNothing: a daemon started again on the site it last applied in full (after
// a restart, a reboot, a power cut) makes no new generation and logs no event; one started on
// an edited site applies the edit.
func TestRestartRedoesNothing(t *testing.T) {
	store := t.TempDir()
	makeStore(t, store)
	var0 := t.TempDir()
	cfg := Config{Store: store, Site: mustAbs(t, "../examples/site"), Listen: "127.0.0.1:0",
		SiteDir: filepath.Join(var0, "site"), State: filepath.Join(var0, "state.db"), DataDir: var0}
	type seen struct {
		status string
		events []byte
	}
	run := func() seen {
		t.Helper()
		n := newRecorder(0)
		addr, stop := start(t, cfg, Options{Notifier: n})
		ready := n.waitFor(t, "READY=1")
		resp, err := http.Get("http://" + addr + "/api/v1/events")
		if err != nil {
			t.Fatal(err)
		}
		events, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		status, _, _ := strings.Cut(strings.TrimPrefix(ready, "READY=1\nSTATUS="), "; serving")
		return seen{status, events}
	}
	first := run()
	second := run()
	if second.status != first.status || !strings.Contains(first.status, "generation 1;") {
		t.Errorf("status after a restart = %q, want %q (generation 1, unchanged)", second.status, first.status)
	}
	if string(second.events) != string(first.events) {
		t.Errorf("events after a restart:\n%s\nwant as before:\n%s", second.events, first.events)
	}
	// The control: an edit made while the daemon was stopped is applied at start.
	save(t, filepath.Join(cfg.SiteDir, "hosts", "web-09.toml"), "mac = \"52:54:00:20:00:19\"\nroles = [\"web\"]\n")
	if third := run(); !strings.Contains(third.status, "generation 2; 4 hosts") {
		t.Errorf("status after a start on an edited site = %q, want generation 2 with 4 hosts", third.status)
	}
}

// TestRunServesBootAndAgents: the daemon's port serves the iPXE scripts and the agent API
// beside the registry and the operator API. An ephemeral appliance sends a pending host no
// install; allow_ephemeral lets it; an unknown machine is sent to discovery, and its report
// makes a discovered record.
func TestRunServesBootAndAgents(t *testing.T) {
	store := t.TempDir()
	makeStore(t, store)
	for _, allow := range []bool{false, true} {
		var0 := t.TempDir()
		cfg := Config{Store: store, Site: mustAbs(t, "../examples/site"), Listen: "127.0.0.1:0",
			SiteDir: filepath.Join(var0, "site"), State: filepath.Join(var0, "state.db"), DataDir: var0, AllowEphemeral: allow}
		addr, stop := start(t, cfg, Options{Notifier: newRecorder(0)})
		get := func(path string) (int, string) {
			t.Helper()
			resp, err := http.Get("http://" + addr + path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		code, script := get("/boot/ipxe?mac=52:54:00:20:00:11&platform=pcbios") // web-01, pending
		switch {
		case code != http.StatusOK || !strings.HasPrefix(script, "#!ipxe"):
			t.Errorf("allow_ephemeral=%v: /boot/ipxe for web-01 = %d\n%s", allow, code, script)
		case !allow && (strings.Contains(script, "cairn.token=") || !strings.Contains(script, "ephemeral")):
			t.Errorf("an ephemeral appliance's script for a pending host hands out a token or does not say why:\n%s", script)
		case allow && !strings.Contains(script, "cairn.mode=provision") || allow && !strings.Contains(script, "cairn.token="):
			t.Errorf("with allow_ephemeral the script for a pending host does not provision:\n%s", script)
		}
		if code, script := get("/boot/ipxe?mac=52:54:00:99:00:01&platform=efi"); code != http.StatusOK || !strings.Contains(script, "cairn.mode=discover") {
			t.Errorf("/boot/ipxe for an unknown MAC = %d, want discovery:\n%s", code, script)
		}
		body := strings.NewReader(`{"mac":"52:54:00:99:00:01","firmware":"uefi"}`)
		resp, err := http.Post("http://"+addr+agentapi.Path("52:54:00:99:00:01", "inventory"), "application/json", body)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Errorf("the discovery report = %s", resp.Status)
		}
		if _, hosts := get("/api/v1/hosts"); !strings.Contains(hosts, `"discovered"`) {
			t.Errorf("/api/v1/hosts after a discovery report shows no discovered host:\n%s", hosts)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRunPXEWaitsForItsInterface: with pxe on and a site whose interface is not here, the
// daemon still serves, and systemctl status says why DHCP and TFTP do not.
func TestRunPXEWaitsForItsInterface(t *testing.T) {
	if _, err := net.InterfaceByName("eth1"); err == nil {
		t.Skip("this machine has an eth1, the example site's interface")
	}
	store := t.TempDir()
	makeStore(t, store)
	var0 := t.TempDir()
	cfg := Config{Store: store, Site: mustAbs(t, "../examples/site"), Listen: "127.0.0.1:0",
		SiteDir: filepath.Join(var0, "site"), State: filepath.Join(var0, "state.db"), DataDir: var0, PXE: true}
	n := newRecorder(0)
	addr, stop := start(t, cfg, Options{Notifier: n})
	deadline := time.Now().Add(10 * time.Second)
	for {
		n.mu.Lock()
		last := ""
		for _, s := range n.states {
			if strings.Contains(s, "STATUS=") {
				last = s
			}
		}
		n.mu.Unlock()
		if strings.Contains(last, `DHCP not serving: network.interface = "eth1"`) && strings.Contains(last, `TFTP not serving: network.interface = "eth1"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the STATUS= line does not say why DHCP and TFTP do not serve: %q", last)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r, err := http.Get("http://" + addr + "/v2/"); err != nil || r.StatusCode != http.StatusOK {
		t.Errorf("the registry while PXE waits: %v %v", r, err)
	} else {
		r.Body.Close()
	}
	if err := stop(); err != nil {
		t.Errorf("Run = %v, want a clean stop", err)
	}
}
