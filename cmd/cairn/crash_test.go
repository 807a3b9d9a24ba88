package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/site/sitetest"

	"github.com/fsnotify/fsnotify"

	"github.com/cairn-appliance/cairn/airgap/airgaptest"
	"github.com/cairn-appliance/cairn/daemon/plan"
	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/site"
)

const (
	crashHosts = 500 // hosts in the site
	crashKills = 20  // kills that must land in the middle of an apply
	crashRuns  = 150 // daemon starts the test may spend on them
)

// TestDaemonCrashAndResume runs the real cairn binary over a 500-host site, SIGKILLs it at
// random moments while it applies the site, 20 times, restarting it each time, and checks that
// it ends in the state a daemon that was never killed ends in: nothing lost, nothing applied
// twice.
//
// Between kills the site is edited, so that every kind of change (adds, spec changes,
// container changes, removals, re-provisioning) is interrupted. A second daemon, never killed,
// applies each edit too, into its own state file: that is the clean run the crashed one must
// match. An edit is made only once the crashed daemon has applied the one before in full, so
// that both see the same sequence of sites; after each, the same hosts of both are marked
// ready, as their agents would report. (A daemon started afresh on the last site alone is
// compared too, but only on what the site says of each host: a host's phase, containers
// generation and events come of the changes it went through.)
//
// Kill moments are drawn from the apply itself: the kill comes after a random number of the
// daemon's writes to its state file (seen with inotify), up to as many as the clean daemon
// made applying the changes left, plus up to 2ms. A kill counts only when the state file,
// opened after it, proves it landed part-way through an apply: the killed run had recorded its
// attempt at a new generation and had not recorded it applied. Kills that landed before or
// after the apply are logged and not counted.
func TestDaemonCrashAndResume(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: builds cairn and kills cairn daemon 20 times over a 500-host site")
	}
	began := time.Now()
	root := t.TempDir()
	store := filepath.Join(root, "store")
	airgaptest.SealedStoreOf(t, store, crashImages()...)
	config := filepath.Join(root, "daemon.toml") // empty: whatever /etc/cairn holds stays out
	if err := os.WriteFile(config, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	siteDir := filepath.Join(root, "site")
	d := daemonCmd{bin: buildCairn(t, root), config: config, store: store, site: siteDir}
	cleanDB := filepath.Join(root, "clean", "state.db")
	c := &crasher{d: d, stateFile: filepath.Join(root, "crash", "state.db")}
	seed := uint64(time.Now().UnixNano())  //nolint:gosec // a test's seed
	c.rng = rand.New(rand.NewPCG(seed, 0)) //nolint:gosec // test timing, not security
	t.Logf("seed %d", seed)

	s := newCrashSite(crashHosts)
	for edit := 0; c.kills < crashKills; edit++ {
		what := "the site"
		if edit > 0 {
			what = s.edit(edit)
		}
		s.write(t, siteDir)
		desired, err := site.Load(siteDir)
		if err != nil {
			t.Fatal(err)
		}
		writes := d.clean(t, cleanDB)
		t.Logf("edit %d: %s; the clean daemon applied it in %d writes to its state", edit, what, writes)
		c.interrupt(t, desired, writes)
		if c.kills < crashKills { // the edit is applied in full by both
			agentsReport(t, cleanDB, c.stateFile)
		}
	}
	// The last start runs to READY and stops cleanly, as does a daemon started afresh on the
	// final site.
	d.run(t, c.stateFile)
	freshDB := filepath.Join(root, "fresh", "state.db")
	d.run(t, freshDB)

	t.Logf("%d kills in the middle of an apply out of %d starts: %d after the attempt was recorded and before the first host transaction committed, %d between two host transactions, %d after the last; %v in all",
		c.kills, c.runs, c.tally[0], c.tally[1], c.tally[2], time.Since(began).Round(time.Millisecond))
	compareStates(t, snapshotState(t, cleanDB), snapshotState(t, c.stateFile), snapshotState(t, freshDB), c.kills)
}

// crasher is the daemon that gets killed, and its tally.
type crasher struct {
	d         daemonCmd
	stateFile string
	rng       *rand.Rand
	runs      int
	kills     int    // that landed mid-apply
	tally     [3]int // of those: before the first host transaction, between two, after the last
}

// interrupt kills the daemon during its applies of site s until s is applied in full or the
// kills are all made. writes is how many writes to its state the clean daemon made applying s.
func (c *crasher) interrupt(t *testing.T, s *site.Site, writes int) {
	all := remaining(t, c.stateFile, s)
	left, stalled := all, false
	for c.kills < crashKills {
		if c.runs++; c.runs > crashRuns {
			t.Fatalf("only %d of %d kills landed in the middle of an apply in %d daemon starts", c.kills, crashKills, crashRuns)
		}
		before := generation(t, c.stateFile)
		if left == 0 || stalled {
			// A kill after the last host transaction left only the generation to record. A kill
			// before the first host transaction changed nothing; what is left often fits in one
			// transaction then, and every further kill would land at the same point. That
			// moment has had its kill: let this start finish, and go on to the next edit.
			c.d.run(t, c.stateFile)
			return
		}
		// Writes seen are fewer when inotify merges them (a busy machine): aim at the first
		// three quarters of them, so that most kills land inside the apply; the rest of it is
		// reached by the starts that resume it.
		n := 1 + c.rng.IntN(max(1, writes*left*3/(all*4)))
		delay := time.Duration(c.rng.Int64N(int64(2 * time.Millisecond)))
		c.d.killDuringApply(t, c.stateFile, n, delay)
		after := generation(t, c.stateFile)
		now := remaining(t, c.stateFile, s)
		if after.Error != "" {
			t.Fatalf("after a kill the state records a failed site load: %s", after.Error)
		}
		if now > left {
			t.Fatalf("a kill undid changes: %d were left before the start, %d after the kill", left, now)
		}
		switch {
		case after.Attempted == before.Attempted:
			t.Logf("  killed %v after write %d: before the apply recorded its attempt; not counted", delay, n)
		case after.Applied == after.Attempted:
			if now != 0 {
				t.Fatalf("generation %d is recorded applied, yet %d changes of it are left", after.Applied, now)
			}
			t.Logf("  killed %v after write %d: after the apply of generation %d ended; not counted", delay, n, after.Applied)
			return
		default:
			c.kills++
			switch now {
			case left:
				c.tally[0]++
				stalled = true
			case 0:
				c.tally[2]++
			default:
				c.tally[1]++
			}
			t.Logf("  kill %d, %v after write %d: generation %d attempted, %d applied; %d of %d changes left",
				c.kills, delay, n, after.Attempted, after.Applied, now, left)
		}
		left = now
	}
}

// agentsReport marks every other host ready, with a host token, in each state file, as their
// agents would report once provisioned, so that the next edit moves hosts between phases: a
// containers change makes a ready host deploying, a re-provision makes it pending and drops
// its tokens. No daemon holds the files.
func agentsReport(t *testing.T, stateFiles ...string) {
	t.Helper()
	for _, f := range stateFiles {
		st, err := state.Open(f, state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		err = st.Update(context.Background(), func(tx state.Tx) error {
			hosts, err := tx.Hosts()
			for i, h := range hosts {
				if i%2 == 0 && h.Phase != state.Ready {
					h.Phase, h.HostTokenHash, h.Updated = state.Ready, "token of "+h.Name, time.Now()
					err = errors.Join(err, tx.PutHost(h))
				}
			}
			return err
		})
		if err := errors.Join(err, st.Close()); err != nil {
			t.Fatal(err)
		}
	}
}

// buildCairn builds the cairn binary (without -race, as it ships) into dir.
func buildCairn(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "cairn")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building cairn: %v\n%s", err, out)
	}
	return bin
}

// daemonCmd starts cairn daemon over one site.
type daemonCmd struct{ bin, config, store, site string }

type daemonProc struct {
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	exited         chan struct{}
}

func (d daemonCmd) start(t *testing.T, stateFile string) *daemonProc {
	t.Helper()
	p := &daemonProc{exited: make(chan struct{})}
	p.cmd = exec.Command(d.bin, "daemon", "--config", d.config, "--store", d.store, "--site-dir", d.site,
		"--state", stateFile, "--listen", "127.0.0.1:0")
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); <-p.exited })
	return p
}

// ready waits for the READY line.
func (p *daemonProc) ready(t *testing.T) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for !strings.Contains(p.stdout.String(), "cairn: READY registry=127.0.0.1:") {
		select {
		case <-p.exited:
			t.Fatalf("cairn daemon exited (%v) before it was ready:\n%s", p.cmd.ProcessState, p.stderr.String())
		case <-deadline:
			t.Fatalf("cairn daemon not ready within 60s:\n%s", p.stderr.String())
		case <-time.After(time.Millisecond):
		}
	}
}

// stop stops the daemon as systemctl stop does, and checks it exits 0.
func (p *daemonProc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("cairn daemon did not stop within 30s of SIGTERM:\n%s", p.stderr.String())
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("cairn daemon stopped with exit %d:\n%s", code, p.stderr.String())
	}
}

// run starts a daemon on stateFile, waits until it is ready (the site applied) and stops it.
func (d daemonCmd) run(t *testing.T, stateFile string) {
	t.Helper()
	p := d.start(t, stateFile)
	p.ready(t)
	p.stop(t)
}

// clean runs the daemon that is never killed to READY, and returns how many writes to its state
// file it made on the way: its apply's writes.
func (d daemonCmd) clean(t *testing.T, stateFile string) int {
	t.Helper()
	w := watchState(t, stateFile)
	defer w.Close()
	p := d.start(t, stateFile)
	p.waitWrite(t, w, stateFile, 0)
	writes := 1
	for !strings.Contains(p.stdout.String(), "cairn: READY") {
		if p.waitWrite(t, w, stateFile, 5*time.Millisecond) {
			writes++
		}
	}
	for p.waitWrite(t, w, stateFile, 20*time.Millisecond) { // events still on their way
		writes++
	}
	p.ready(t)
	p.stop(t)
	return writes
}

// killDuringApply starts the daemon on stateFile, waits for its n-th write to the file (or
// until it has not written for a while: its apply is over), waits delay more and SIGKILLs it.
func (d daemonCmd) killDuringApply(t *testing.T, stateFile string, n int, delay time.Duration) {
	t.Helper()
	w := watchState(t, stateFile)
	defer w.Close()
	p := d.start(t, stateFile)
	p.waitWrite(t, w, stateFile, 0)
	for range n - 1 {
		if !p.waitWrite(t, w, stateFile, 200*time.Millisecond) {
			break
		}
	}
	select {
	case <-time.After(delay):
	case <-p.exited:
		t.Fatalf("cairn daemon exited (%v) by itself:\n%s", p.cmd.ProcessState, p.stderr.String())
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
}

// watchState watches the directory of stateFile (creating it), so that the first write of a
// daemon to the file is seen however soon it comes.
func watchState(t *testing.T, stateFile string) *fsnotify.Watcher {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(stateFile), 0o700); err != nil {
		t.Fatal(err)
	}
	w, err := fsnotify.NewBufferedWatcher(4096) // drained at once, the kernel merges fewer writes
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(filepath.Dir(stateFile)); err != nil {
		t.Fatal(err)
	}
	return w
}

// waitWrite waits until the daemon writes to stateFile, for at most quiet (0: as long as the
// daemon takes to start), and reports whether it did.
func (p *daemonProc) waitWrite(t *testing.T, w *fsnotify.Watcher, stateFile string, quiet time.Duration) bool {
	t.Helper()
	if quiet == 0 {
		quiet = 60 * time.Second
	}
	deadline := time.After(quiet)
	for {
		select {
		case ev := <-w.Events:
			if ev.Name == stateFile && ev.Has(fsnotify.Write) {
				return true
			}
		case err := <-w.Errors:
			t.Fatal(err)
		case <-p.exited:
			t.Fatalf("cairn daemon exited (%v) by itself:\n%s", p.cmd.ProcessState, p.stderr.String())
		case <-deadline:
			return false
		}
	}
}

// generation reads the generation record of a state file no daemon holds.
func generation(t *testing.T, stateFile string) state.Generation {
	t.Helper()
	var g state.Generation
	viewState(t, stateFile, func(tx state.Tx) (err error) { g, err = tx.Generation(); return err })
	return g
}

// remaining says how many changes the site s still brings to the state file.
func remaining(t *testing.T, stateFile string, s *site.Site) int {
	t.Helper()
	var hosts []state.Host
	viewState(t, stateFile, func(tx state.Tx) (err error) { hosts, err = tx.Hosts(); return err })
	p, err := plan.Compute(s, hosts)
	if err != nil {
		t.Fatal(err)
	}
	return len(p.Items)
}

// viewState runs fn over the state file, which no daemon holds; a file not created yet reads
// as empty.
func viewState(t *testing.T, stateFile string, fn func(state.Tx) error) {
	t.Helper()
	ctx := context.Background()
	if _, err := os.Stat(stateFile); errors.Is(err, os.ErrNotExist) {
		if err := state.NewMemory(0).View(ctx, fn); err != nil {
			t.Fatal(err)
		}
		return
	}
	st, err := state.Open(stateFile, state.Options{ReadOnly: true})
	if err != nil {
		// A daemon killed right after creating the file left it unmigrated, which a read-only
		// open refuses; migrate it, as the daemon's next start does.
		st, err = state.Open(stateFile, state.Options{})
	}
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.View(ctx, fn); err != nil {
		t.Fatal(err)
	}
}

// crashTags is how many tags of each image the crash site's edits go round: each edit of an
// image picks the next, so that it always changes, and the store holds them all.
const crashTags = 8

// crashImages are the images the crash site may name, first those it starts with.
func crashImages() []string {
	names := []string{"docker.io/library/nginx:1.27", "quay.io/prometheus/node-exporter:v1.8.2"}
	for i := range crashTags {
		names = append(names, fmt.Sprintf("docker.io/library/nginx:1.%d", 28+i), fmt.Sprintf("quay.io/prometheus/node-exporter:v1.8.%d", 3+i))
	}
	return names
}

// crashSite is the crash test's site as data: it writes itself out and edits itself the ways
// operators edit sites.
type crashSite struct {
	web, mon string            // the roles' images
	hosts    map[int]crashHost // by number: hosts/hNNNN.toml
	next     int               // the number of the next host to join
}

type crashHost struct {
	rack      string
	provision int
}

func newCrashSite(n int) *crashSite {
	s := &crashSite{web: "docker.io/library/nginx:1.27", mon: "quay.io/prometheus/node-exporter:v1.8.2", hosts: map[int]crashHost{}, next: n}
	for i := range n {
		s.hosts[i] = crashHost{rack: "r0"}
	}
	return s
}

// edit makes the k-th edit (k ≥ 1) and says what it is. Each changes most of the hosts, so
// that its apply takes several transactions.
func (s *crashSite) edit(k int) string {
	switch k % 5 {
	case 1:
		s.web = fmt.Sprintf("docker.io/library/nginx:1.%d", 28+(k/5)%crashTags)
		return "a new web image: the containers of every host change"
	case 2:
		s.relabel(k)
		return "every host relabelled: every spec changes"
	case 3:
		// Fewer than half leave, so the plan is not refused as a mass removal.
		for _, i := range slices.Sorted(maps.Keys(s.hosts))[:200] {
			delete(s.hosts, i)
		}
		for range 200 {
			s.hosts[s.next] = crashHost{rack: fmt.Sprintf("r%d", k)}
			s.next++
		}
		return "200 hosts leave the site and 200 join"
	case 4:
		// Every host re-provisioned, every other one relabelled too: a host then has two
		// changes, which must land in one transaction (a re-provision writes the new spec, so
		// a kill between the two would leave its spec change unrecorded).
		for i, h := range s.hosts {
			h.provision++
			if i%2 == 0 {
				h.rack = fmt.Sprintf("r%d", k)
			}
			s.hosts[i] = h
		}
		return "every host re-provisioned, every other one relabelled"
	default:
		s.mon = fmt.Sprintf("quay.io/prometheus/node-exporter:v1.8.%d", 3+(k/5)%crashTags)
		s.relabel(k)
		return "a new exporter image and new labels: the spec and containers of every host change"
	}
}

func (s *crashSite) relabel(k int) {
	for i, h := range s.hosts {
		h.rack = fmt.Sprintf("r%d", k)
		s.hosts[i] = h
	}
}

// write writes the site into dir, replacing the hosts there.
func (s *crashSite) write(t *testing.T, dir string) {
	t.Helper()
	files := sitetest.Hall(s.web, s.mon)
	for i, h := range s.hosts {
		files[fmt.Sprintf("hosts/h%04d.toml", i)] = sitetest.HallHost(i, h.provision, h.rack)
	}
	if err := os.RemoveAll(filepath.Join(dir, "hosts")); err != nil {
		t.Fatal(err)
	}
	sitetest.Write(t, dir, files)
}

// stateSnapshot is what a state file holds, timestamps left out.
type stateSnapshot struct {
	file   string
	hosts  map[string]state.Host
	gen    state.Generation
	events []state.Event
}

func snapshotState(t *testing.T, stateFile string) stateSnapshot {
	t.Helper()
	s := stateSnapshot{file: stateFile, hosts: map[string]state.Host{}}
	viewState(t, stateFile, func(tx state.Tx) error {
		hosts, err := tx.Hosts()
		if err != nil {
			return err
		}
		for _, h := range hosts {
			h.Updated = time.Time{}
			s.hosts[h.Name] = h
		}
		if s.gen, err = tx.Generation(); err != nil {
			return err
		}
		s.events, err = tx.Events(0, 0)
		return err
	})
	return s
}

// siteGeneration is how a host event names the site generation that made it.
var siteGeneration = regexp.MustCompile(` \(site generation \d+\)$`)

// hostEvents lists every host's events in order, as kind and message, the site generation left
// out of the message.
func (s stateSnapshot) hostEvents() map[string][]string {
	out := map[string][]string{}
	for _, e := range s.events {
		if e.Host != "" {
			out[e.Host] = append(out[e.Host], e.Kind+": "+siteGeneration.ReplaceAllString(e.Message, ""))
		}
	}
	return out
}

// compareStates checks that the crashed daemon's state is the clean one's, and that both hold
// what a daemon started afresh on the final site holds.
//
// Equal must be, host by host, every field but the Updated timestamp: phase, spec, containers,
// containers generation, provision counter, address and tokens; the site applied last (its
// fingerprint), recorded as applied in full; and every host's events, in order, with their
// messages. What may differ:
//   - generation numbers. Every start that gets as far as recording its attempt takes the next
//     one, so the crashed daemon's run ahead of the clean one's by exactly the number of kills
//     that landed mid-apply; for the same reason the site generation a host event names is
//     left out of the comparison.
//   - the site events (site.applied). A killed run records none; the run that finishes records
//     only the changes left, and none at all when a kill came after the last host transaction
//     but before the generation was recorded applied, leaving it an empty plan.
//   - against the fresh daemon, everything but what the site says (address, provision
//     counter, spec, containers): phases, tokens, containers generations and events come of
//     the changes a host went through and of its agent's reports, which a daemon that saw
//     only the final site did not see.
func compareStates(t *testing.T, clean, crashed, fresh stateSnapshot, kills int) {
	t.Helper()
	for _, s := range []stateSnapshot{clean, crashed, fresh} {
		if len(s.hosts) != crashHosts {
			t.Errorf("%s holds %d hosts, want %d", s.file, len(s.hosts), crashHosts)
		}
		if g := s.gen; g.Applied != g.Attempted || g.Error != "" || g.AppliedFingerprint != clean.gen.AppliedFingerprint || g.AppliedFingerprint == "" {
			t.Errorf("%s: generation %+v; want the last attempt applied, without error, with the clean run's fingerprint %s", s.file, g, clean.gen.AppliedFingerprint)
		}
		if len(s.events) == 0 || s.events[0].Seq != 1 {
			t.Fatalf("%s: the event log lost its oldest events to retention, so it cannot be compared; make fewer edits", s.file)
		}
	}
	if want := clean.gen.Applied + int64(kills); crashed.gen.Applied != want {
		t.Errorf("the crashed daemon applied generation %d, want %d: the clean run's %d plus one per kill", crashed.gen.Applied, want, clean.gen.Applied)
	}
	for _, e := range crashed.events {
		if e.Kind == "site.rejected" {
			t.Errorf("the crashed daemon rejected a site: %s", e.Message)
		}
	}

	diffHosts(t, "clean", clean.hosts, "crashed", crashed.hosts, func(h state.Host) state.Host { return h })
	siteOnly := func(h state.Host) state.Host {
		return state.Host{Name: h.Name, MAC: h.MAC, IP: h.IP, Provision: h.Provision, Spec: h.Spec, Containers: h.Containers}
	}
	diffHosts(t, "clean", clean.hosts, "fresh", fresh.hosts, siteOnly)

	want, got := clean.hostEvents(), crashed.hostEvents()
	shown := 0
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if !slices.Equal(want[name], got[name]) && shown < 5 {
			shown++
			t.Errorf("events of host %s:\n clean   %q\n crashed %q", name, want[name], got[name])
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok && shown < 5 {
			shown++
			t.Errorf("events of host %s, which the clean run has none of: %q", name, got[name])
		}
	}
	if t.Failed() {
		return
	}
	n := 0
	for _, evs := range want {
		n += len(evs)
	}
	phases := map[state.Phase]int{}
	for _, h := range crashed.hosts {
		phases[h.Phase]++
	}
	t.Logf("the states agree: %d hosts (%v), %d host events; generation %d applied after the kills, %d in the clean run",
		len(crashed.hosts), phases, n, crashed.gen.Applied, clean.gen.Applied)
}

// diffHosts reports the hosts that differ, after norm, between two states.
func diffHosts(t *testing.T, aName string, a map[string]state.Host, bName string, b map[string]state.Host, norm func(state.Host) state.Host) {
	t.Helper()
	names := slices.Sorted(maps.Keys(a))
	for name := range b {
		if _, ok := a[name]; !ok {
			names = append(names, name)
		}
	}
	shown := 0
	for _, name := range names {
		ha, okA := a[name]
		hb, okB := b[name]
		ja, _ := json.Marshal(norm(ha))
		jb, _ := json.Marshal(norm(hb))
		if okA != okB || string(ja) != string(jb) {
			if shown++; shown <= 5 {
				t.Errorf("host %s:\n %-7s %s\n %-7s %s", name, aName, ja, bName, jb)
			}
		}
	}
	if shown > 5 {
		t.Errorf("… %d hosts differ between the %s and %s states", shown, aName, bName)
	}
}
