package reconcile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/site/sitetest"

	"github.com/cairn-appliance/cairn/airgap/airgaptest"
	"github.com/cairn-appliance/cairn/daemon/plan"
	"github.com/cairn-appliance/cairn/site"
)

const hosts = 10000

// writeSite writes a hall of n hosts into dir.
func writeSite(tb testing.TB, dir string, n int) {
	tb.Helper()
	files := sitetest.Hall("docker.io/library/nginx:1.27", "quay.io/prometheus/node-exporter:v1.8.2")
	for i := range n {
		files[hostFile(i)] = hostTOML(i, "r1")
	}
	sitetest.Write(tb, dir, files)
}

func hostFile(i int) string { return fmt.Sprintf("hosts/h%05d.toml", i) }

func hostTOML(i int, rack string) string { return sitetest.HallHost(i, 0, rack) }

// BenchmarkReconcile measures the converging core on a 10,000-host site: the cold load and
// plan (in process), the daemon's start to READY (load, plan and first apply into its state
// file), then the time from editing one host file to the daemon's API showing the edit applied,
// over 200 edits, and the daemon's peak RSS. Goals: cold < 1 s, p99 < 200 ms, RSS < 300 MB.
func BenchmarkReconcile(b *testing.B) {
	root := b.TempDir()
	siteDir := filepath.Join(root, "site")
	writeSite(b, siteDir, hosts)

	for b.Loop() {
		start := time.Now()
		s, err := site.Load(siteDir)
		if err != nil {
			b.Fatal(err)
		}
		p, err := plan.Compute(s, nil)
		if err != nil {
			b.Fatal(err)
		}
		cold := time.Since(start)
		if p.Count(plan.Add) != hosts {
			b.Fatalf("plan adds %d hosts, want %d", p.Count(plan.Add), hosts)
		}

		d := startDaemon(b, root, siteDir)
		lat := make([]time.Duration, 0, 200)
		for i := range 200 {
			h := (i * 7919) % hosts // spread over the site
			rack := fmt.Sprintf("edit-%d", i)
			t0 := time.Now()
			if err := os.WriteFile(filepath.Join(siteDir, hostFile(h)), []byte(hostTOML(h, rack)), 0o644); err != nil {
				b.Fatal(err)
			}
			d.waitLabel(b, fmt.Sprintf("h%05d", h), rack)
			lat = append(lat, time.Since(t0))
		}
		slices.Sort(lat)
		p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
		rss := d.peakRSS(b)
		d.stop()
		b.ReportMetric(cold.Seconds(), "cold-s")
		b.ReportMetric(d.ready.Seconds(), "start-to-ready-s")
		b.ReportMetric(float64(p50.Milliseconds()), "edit-p50-ms")
		b.ReportMetric(float64(p99.Milliseconds()), "edit-p99-ms")
		b.ReportMetric(float64(rss>>20), "peak-RSS-MiB")
		b.Logf("%d hosts: load+plan %v (goal < 1s); daemon start to READY, first apply included, %v; edit to applied p50 %v, p99 %v (goal < 200ms); daemon peak RSS %d MiB (goal < 300)",
			hosts, cold.Round(time.Millisecond), d.ready.Round(time.Millisecond), p50.Round(time.Millisecond), p99.Round(time.Millisecond), rss>>20)
	}
}

type daemonProc struct {
	cmd   *exec.Cmd
	addr  string
	ready time.Duration
}

// startDaemon builds cairn and runs `cairn daemon` over a tiny store and the site.
func startDaemon(b *testing.B, root, siteDir string) *daemonProc {
	b.Helper()
	bin := filepath.Join(root, "cairn")
	build := exec.Command("go", "build", "-o", bin, "github.com/cairn-appliance/cairn/cmd/cairn")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building cairn: %v\n%s", err, out)
	}
	store := filepath.Join(root, "store")
	airgaptest.SealedStore(b, store, "docker.io/library/nginx:1.27")
	cmd := exec.Command(bin, "daemon", "--store", store, "--site-dir", siteDir,
		"--state", filepath.Join(root, "state.db"), "--listen", "127.0.0.1:0")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "cairn: READY registry=") {
		_ = cmd.Wait()
		b.Fatalf("no ready line: %q %v\n%s", line, err, stderr.String())
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return &daemonProc{cmd: cmd, addr: strings.TrimPrefix(strings.Fields(line)[2], "registry="), ready: time.Since(start)}
}

// waitLabel polls the daemon's API until host shows rack as its label.
func (d *daemonProc) waitLabel(b *testing.B, host, rack string) {
	b.Helper()
	url := "http://" + d.addr + "/api/v1/hosts/" + host
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		resp, err := http.Get(url)
		if err != nil {
			continue
		}
		var h struct{ Spec json.RawMessage }
		err = json.NewDecoder(resp.Body).Decode(&h)
		_ = resp.Body.Close()
		var compact bytes.Buffer
		if err == nil && json.Compact(&compact, h.Spec) == nil && strings.Contains(compact.String(), `"rack":"`+rack+`"`) {
			return
		}
	}
	b.Fatalf("the daemon did not apply the edit of %s within 30s", host)
}

// peakRSS reads the daemon's high-water resident set size.
func (d *daemonProc) peakRSS(b *testing.B) int64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func (d *daemonProc) stop() {
	_ = d.cmd.Process.Signal(os.Interrupt)
	_ = d.cmd.Wait()
}
