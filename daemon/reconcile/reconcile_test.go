package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/site/sitetest"

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
	sitetest.Write(t, dir, files)
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

// cutStore is a store that dies after a number of commits: every Update after them fails
// before it writes anything, as if the daemon had been killed between two transactions. (A
// kill inside a transaction is the same to bbolt: nothing of it is kept. The crash test of
// cmd/cairn kills the real daemon at random moments.)
type cutStore struct {
	state.Store
	left int // commits still allowed; <0: no limit
	done int // commits made
}

var errCut = errors.New("cut")

func (c *cutStore) Update(ctx context.Context, fn func(state.Tx) error) error {
	if c.left == 0 {
		return errCut
	}
	c.left--
	c.done++
	return c.Store.Update(ctx, fn)
}

// outcome renders what an apply leaves that must not depend on where it was cut: every host
// but its update time, and every host's events without the generation they name.
func outcome(t *testing.T, st state.Store) string {
	t.Helper()
	var b strings.Builder
	_ = st.View(context.Background(), func(tx state.Tx) error {
		hosts, _ := tx.Hosts()
		for _, h := range hosts {
			h.Updated = time.Time{}
			j, _ := json.Marshal(h)
			b.Write(j)
			b.WriteByte('\n')
		}
		evs, _ := tx.Events(0, 0)
		for _, e := range evs {
			if e.Host != "" {
				msg, _, _ := strings.Cut(e.Message, " (site generation")
				fmt.Fprintf(&b, "%s %s %s\n", e.Host, e.Kind, msg)
			}
		}
		g, _ := tx.Generation()
		fmt.Fprintf(&b, "applied %s, attempted %s, error %q\n", g.AppliedFingerprint, g.AttemptedFingerprint, g.Error)
		return nil
	})
	return b.String()
}

// TestCutAtEveryCommit applies a series of sites (hosts added; every host re-provisioned,
// relabelled and given a new image; hosts replaced) and cuts each apply after every possible
// number of commits, then resumes it as a restarted daemon would (plan again, apply what is
// left). Every resumed state must equal the uncut one: hosts, tokens dropped, phases, and
// each host's events, none lost and none twice.
func TestCutAtEveryCommit(t *testing.T) {
	defer func(n int) { stepsPerTx = n }(stepsPerTx)
	stepsPerTx = 4 // many transactions, and hosts with several changes across their bounds
	ctx := context.Background()
	dir := t.TempDir()
	host := func(i, provision int, label string) string {
		return fmt.Sprintf("mac = \"52:54:00:00:00:%02x\"\nprovision = %d\nroles = [\"web\"]\n[labels]\nl = %q\n", i, provision, label)
	}
	sites := []func(){
		func() { // 12 hosts
			writeSite(t, dir, 0, "nginx:1.27", "")
			for i := range 12 {
				writeFile(t, dir, fmt.Sprintf("hosts/h%02d.toml", i), host(i, 0, "a"))
			}
		},
		func() { // each host: re-provision, spec change and containers change
			writeSite(t, dir, 0, "nginx:1.28", "")
			for i := range 12 {
				writeFile(t, dir, fmt.Sprintf("hosts/h%02d.toml", i), host(i, 1, "b"))
			}
		},
		func() { // four hosts replaced by four others
			writeSite(t, dir, 0, "nginx:1.28", "")
			for i := 4; i < 16; i++ {
				writeFile(t, dir, fmt.Sprintf("hosts/h%02d.toml", i), host(i, 1, "b"))
			}
		},
	}
	// ready marks every host ready with tokens, as agents would, between applies.
	ready := func(st state.Store) {
		_ = st.Update(ctx, func(tx state.Tx) error {
			hosts, _ := tx.Hosts()
			for _, h := range hosts {
				h.Phase, h.HostTokenHash = state.Ready, "token-of-"+h.Name
				_ = tx.PutHost(h)
			}
			return nil
		})
	}
	// before applies the sites before site k cleanly into a new store.
	before := func(k int) state.Store {
		st := state.NewMemory(0)
		for i := range k {
			sites[i]()
			if _, err := Apply(ctx, st, mustLoad(t, dir), int64(i+1), fmt.Sprintf("fp%d", i)); err != nil {
				t.Fatal(err)
			}
			ready(st)
		}
		return st
	}
	cuts := 0
	for k := range sites {
		clean := &cutStore{Store: before(k), left: -1}
		sites[k]()
		s := mustLoad(t, dir)
		fp := fmt.Sprintf("fp%d", k)
		if _, err := Apply(ctx, clean, s, int64(k+1), fp); err != nil {
			t.Fatal(err)
		}
		want := outcome(t, clean)
		for n := range clean.done {
			cut := &cutStore{Store: before(k), left: n}
			sites[k]()
			if _, err := Apply(ctx, cut, mustLoad(t, dir), int64(k+1), fp); !errors.Is(err, errCut) {
				t.Fatalf("site %d cut after %d of %d commits: Apply = %v, want the cut", k, n, clean.done, err)
			}
			// The daemon starts again: it loads the site anew and applies what is left.
			if _, err := Apply(ctx, cut.Store, mustLoad(t, dir), int64(k+2), fp); err != nil {
				t.Fatalf("site %d, resuming after %d commits: %v", k, n, err)
			}
			if got := outcome(t, cut.Store); got != want {
				t.Fatalf("site %d cut after %d of %d commits, then resumed, differs from the uncut apply:\n--- uncut\n%s--- resumed\n%s", k, n, clean.done, want, got)
			}
			cuts++
		}
	}
	t.Logf("%d cuts, each resumed to the uncut state", cuts)
}

func writeFile(t *testing.T, dir, rel, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, rel)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, rel), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBatchKeepsHostsWhole: transactions hold about stepsPerTx items, never half a host's.
func TestBatchKeepsHostsWhole(t *testing.T) {
	defer func(n int) { stepsPerTx = n }(stepsPerTx)
	stepsPerTx = 2
	var items []plan.Item
	for _, h := range []string{"a", "a", "b", "c", "c", "c", "d"} {
		items = append(items, plan.Item{Host: h})
	}
	var got []string
	for _, b := range batch(items) {
		var hosts []string
		for _, it := range b {
			hosts = append(hosts, it.Host)
		}
		got = append(got, strings.Join(hosts, ""))
	}
	if want := []string{"aa", "bccc", "d"}; !slices.Equal(got, want) {
		t.Errorf("batches %q, want %q", got, want)
	}
	if b := batch(nil); len(b) != 1 || len(b[0]) != 0 {
		t.Errorf("batch(nil) = %v, want one empty batch", b)
	}
}

// TestAdoption: a machine that PXE-booted unknown and reported its inventory becomes the site
// host that names its MAC, keeping the inventory; the discovered record is gone.
func TestAdoption(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := state.NewMemory(0)
	writeSite(t, dir, 1, "nginx:1.27", "")
	if _, err := Apply(ctx, st, mustLoad(t, dir), 1, "fp1"); err != nil {
		t.Fatal(err)
	}
	// h0001's MAC, in another form than the site's, as discovery recorded it.
	inv := json.RawMessage(`{"mac":"52:54:00:00:00:01","disks":[]}`)
	if err := st.Update(ctx, func(tx state.Tx) error {
		return tx.PutHost(state.Host{Name: "discovered-525400000001", MAC: "52:54:00:00:00:01", Phase: state.Discovered, Inventory: inv})
	}); err != nil {
		t.Fatal(err)
	}
	writeSite(t, dir, 2, "nginx:1.27", "")
	p, err := Apply(ctx, st, mustLoad(t, dir), 2, "fp2")
	if err != nil {
		t.Fatal(err)
	}
	if p.Count(plan.Add) != 1 || !strings.Contains(strings.Join(p.Items[0].Details, " "), "adopts the discovered machine discovered-525400000001") {
		t.Errorf("plan = %+v, want h0001 added, adopting the discovered machine", p.Items)
	}
	hosts := hostsOf(t, st)
	if len(hosts) != 2 || hosts[1].Name != "h0001" || hosts[1].Phase != state.Pending || string(hosts[1].Inventory) != string(inv) {
		t.Errorf("hosts after adoption = %+v, want h0000 and h0001 (pending, with the inventory), no discovered record", hosts)
	}
}
