package reconcile

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/daemon/plan"
	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/site"
)

// writeSite writes a site of n hosts running the web role, with allow and image as given.
func writeSite(t testing.TB, dir string, n int, image, extra string) {
	t.Helper()
	files := map[string]string{
		"site.toml": `[site]
name = "hall"
` + extra + `
[network]
interface = "eth1"
cidr = "10.0.0.0/16"
appliance_ip = "10.0.0.1"
dhcp = "proxy"
[defaults]
os = "debian-12"
disk = "first-nonremovable"
`,
		"roles/web.toml": fmt.Sprintf("[[container]]\nname = \"web\"\nimage = %q\n", image),
	}
	for i := range n {
		files[fmt.Sprintf("hosts/h%04d.toml", i)] = fmt.Sprintf("mac = \"52:54:00:00:%02x:%02x\"\nip = \"10.0.%d.%d\"\nroles = [\"web\"]\n", i>>8, i&0xff, 1+i/200, 10+i%200)
	}
	_ = os.RemoveAll(filepath.Join(dir, "hosts"))
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func mustLoad(t testing.TB, dir string) *site.Site {
	t.Helper()
	s, err := site.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func hostsOf(t testing.TB, st state.Store) []state.Host {
	t.Helper()
	var hosts []state.Host
	if err := st.View(context.Background(), func(tx state.Tx) (err error) {
		hosts, err = tx.Hosts()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return hosts
}

func TestApplyConverges(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := state.NewMemory(0)
	writeSite(t, dir, 4, "nginx:1.27", "")
	p, err := Apply(ctx, st, mustLoad(t, dir), 1, "fp1")
	if err != nil || p.Count(plan.Add) != 4 {
		t.Fatalf("first apply: %v, %+v", err, p)
	}
	// Applying the same site again changes nothing.
	if p, err = Apply(ctx, st, mustLoad(t, dir), 2, "fp1"); err != nil || !p.Empty() {
		t.Fatalf("second apply: %v, %+v", err, p)
	}
	// The hosts become ready (as the agents would report); a new image redeploys them.
	_ = st.Update(ctx, func(tx state.Tx) error {
		hosts, _ := tx.Hosts()
		for _, h := range hosts {
			h.Phase = state.Ready
			_ = tx.PutHost(h)
		}
		return nil
	})
	writeSite(t, dir, 4, "nginx:1.28", "")
	if p, err = Apply(ctx, st, mustLoad(t, dir), 3, "fp3"); err != nil || p.Count(plan.Containers) != 4 {
		t.Fatalf("image change: %v, %+v", err, p)
	}
	for _, h := range hostsOf(t, st) {
		if h.Phase != state.Deploying || h.ContainersGeneration != 2 || !strings.Contains(string(h.Containers), "nginx:1.28") {
			t.Errorf("host %s after an image change: phase %s, generation %d", h.Name, h.Phase, h.ContainersGeneration)
		}
	}
	// Removing three of four hosts is refused, and nothing is applied.
	writeSite(t, dir, 1, "nginx:1.28", "")
	if _, err = Apply(ctx, st, mustLoad(t, dir), 4, "fp4"); !errors.Is(err, ErrRefused) {
		t.Fatalf("mass removal: %v, want ErrRefused", err)
	}
	if n := len(hostsOf(t, st)); n != 4 {
		t.Errorf("a refused plan left %d hosts, want 4", n)
	}
	var g state.Generation
	_ = st.View(ctx, func(tx state.Tx) (err error) { g, err = tx.Generation(); return err })
	if g.Applied != 3 || g.Attempted != 4 || !strings.Contains(g.Error, "allow_mass_removal") {
		t.Errorf("generation after a refusal = %+v, want applied 3, attempted 4 with the reason", g)
	}
}

// TestCrashAndResume kills a process applying a 500-host site at 20 random moments, restarting
// it each time, and checks that the state it ends with is the one a clean run gives.
func TestCrashAndResume(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: kills and restarts a process 20 times")
	}
	dir := t.TempDir()
	writeSite(t, dir, 500, "nginx:1.27", "")

	clean := filepath.Join(t.TempDir(), "clean.db")
	start := time.Now()
	if out, err := child(clean, dir).CombinedOutput(); err != nil {
		t.Fatalf("clean run: %v\n%s", err, out)
	}
	took := time.Since(start)

	crashed := filepath.Join(t.TempDir(), "crashed.db")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1)) //nolint:gosec // test timing, not security
	kills, partial := 0, 0
	for range 20 {
		// The child says "committed" after every transaction; it is killed after a random number
		// of them, somewhere inside its apply, with a random delay so the kill can also land
		// inside a transaction.
		cmd := child(crashed, dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		target := 1 + rng.IntN(24)
		sc := bufio.NewScanner(out)
		for n := 0; n < target && sc.Scan(); n++ {
		}
		time.Sleep(time.Duration(rng.Int64N(int64(2 * time.Millisecond))))
		if err := cmd.Process.Signal(syscall.SIGKILL); err == nil {
			kills++
		}
		_, _ = io.Copy(io.Discard, out)
		_ = cmd.Wait()
		if n := countHosts(t, crashed); n > 0 && n < 500 {
			partial++ // killed in the middle of applying
		}
	}
	if partial == 0 {
		t.Errorf("none of the %d kills landed in the middle of an apply", kills)
	}
	if out, err := child(crashed, dir).CombinedOutput(); err != nil {
		t.Fatalf("final run: %v\n%s", err, out)
	}
	t.Logf("clean apply of 500 hosts took %v; killed %d runs, %d of them half-way", took, kills, partial)

	want, got := snapshot(t, clean), snapshot(t, crashed)
	if want != got {
		t.Errorf("state after crashes differs from a clean run's:\n--- clean\n%.2000s\n--- crashed\n%.2000s", want, got)
	}
}

// countHosts reads how many hosts a state file holds (0 when it does not exist yet).
func countHosts(t *testing.T, path string) int {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		return 0
	}
	st, err := state.Open(path, state.Options{ReadOnly: true})
	if err != nil {
		return 0 // not written far enough to open: as good as empty
	}
	defer st.Close()
	return len(hostsOf(t, st))
}

// snapshot renders the hosts of a state file without timestamps, and checks its event log
// holds exactly one add per host.
func snapshot(t *testing.T, path string) string {
	t.Helper()
	st, err := state.Open(path, state.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var b strings.Builder
	adds := map[string]int{}
	_ = st.View(context.Background(), func(tx state.Tx) error {
		hosts, _ := tx.Hosts()
		for _, h := range hosts {
			h.Updated = time.Time{}
			j, _ := json.Marshal(h)
			b.Write(j)
			b.WriteByte('\n')
		}
		g, _ := tx.Generation()
		fmt.Fprintf(&b, "applied %d %s\n", g.Applied, g.AppliedFingerprint)
		evs, _ := tx.Events(0, 0)
		for _, e := range evs {
			if e.Kind == "host.add" {
				adds[e.Host]++
			}
		}
		return nil
	})
	if len(adds) != 500 {
		t.Errorf("%s: %d hosts have an add event, want 500", path, len(adds))
	}
	for h, n := range adds {
		if n != 1 {
			t.Errorf("%s: host %s was added %d times", path, h, n)
		}
	}
	return b.String()
}

// child runs this test binary as a process that applies dir to the state file.
func child(stateFile, dir string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CAIRN_RECONCILE_CHILD="+stateFile+"|"+dir)
	return cmd
}

func TestMain(m *testing.M) {
	if v := os.Getenv("CAIRN_RECONCILE_CHILD"); v != "" {
		stateFile, dir, _ := strings.Cut(v, "|")
		if err := runChild(stateFile, dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runChild(stateFile, dir string) error {
	stepsPerTx = 1 // a kill can then land between any two hosts
	st, err := state.Open(stateFile, state.Options{Timeout: 10 * time.Second})
	if err != nil {
		return err
	}
	defer st.Close()
	s, err := site.Load(dir)
	if err != nil {
		return err
	}
	changes, cancel := st.Subscribe()
	defer cancel()
	go func() {
		for range changes {
			fmt.Println("committed")
		}
	}()
	_, err = Apply(context.Background(), st, s, 1, "fp")
	return err
}
