package vmtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/daemon"
)

// TestApplianceSystemd boots the example ISO's own kernel, initramfs, root filesystem and
// command line, adding only systemd's debug shell on a second serial port, and checks
// cairn.service from inside the appliance, as an operator at its console would:
//
//   - the unit is active and systemctl status shows the daemon's STATUS= line;
//   - systemctl reload re-reads the site in the same process: the daemon sends RELOADING=1,
//     then READY=1 once the site is applied, and systemctl reload returns only then;
//   - a daemon that hangs (SIGSTOP: the whole process freezes, so no WATCHDOG=1) is killed by
//     systemd for a watchdog timeout, with the unit's shipped WatchdogSec=30s, and restarted.
func TestApplianceSystemd(t *testing.T) {
	f := applianceISO(t)
	began := time.Now()
	kb, err := KernelFromISO(f.iso, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	vm := New(t, Options{ISO: f.iso, Kernel: &kb, Shell: true, Forward: []int{5000}})
	vm.Start()
	vm.WaitSerial(daemon.ReadyPrefix, readyTimeout)
	bootTook := vm.Uptime()
	sh := vm.Shell(60 * time.Second)
	api := "http://" + vm.Addr(5000) + "/api/v1/status"

	// 1. The unit as shipped is active, and shows what the daemon last told systemd.
	if out := strings.TrimSpace(sh.MustRun("systemctl is-active cairn")); out != "active" {
		t.Fatalf("systemctl is-active cairn = %q, want active", out)
	}
	p := unitProps(sh, "Type", "FragmentPath", "DropInPaths", "WatchdogUSec", "MainPID", "NRestarts", "StatusText")
	if p["FragmentPath"] != "/etc/systemd/system/cairn.service" || p["DropInPaths"] != "" {
		t.Errorf("cairn.service comes from %q with drop-ins %q, want the shipped /etc/systemd/system/cairn.service alone", p["FragmentPath"], p["DropInPaths"])
	}
	if p["Type"] != "notify-reload" || p["WatchdogUSec"] != "30s" {
		t.Errorf("cairn.service Type=%s WatchdogUSec=%s, want notify-reload and 30s as shipped", p["Type"], p["WatchdogUSec"])
	}
	status := sh.MustRun("systemctl status cairn --no-pager --full")
	m := regexp.MustCompile(`Status: "site rack1 generation (\d+); 3 hosts[^"]*"`).FindStringSubmatch(status)
	if m == nil {
		t.Fatalf("systemctl status cairn shows no STATUS= line of the example site's generation and hosts:\n%s", status)
	}
	gen, _ := strconv.ParseInt(m[1], 10, 64)
	if got := appliedGeneration(t, api, 60*time.Second); got != gen {
		t.Errorf("/api/v1/status applied generation %d, systemctl status says %d", got, gen)
	}
	pid, restarts := p["MainPID"], p["NRestarts"]
	t.Logf("cairn.service active, main PID %s, %s", pid, m[0])

	// 2. systemctl reload: SIGHUP, RELOADING=1, the site re-read and applied, READY=1; same process.
	// systemd logs the notifications it gets at debug level only, so it logs at debug meanwhile.
	level := strings.TrimSpace(sh.MustRun("systemd-analyze log-level"))
	cursor := journalCursor(sh)
	sh.MustRun("systemd-analyze log-level debug")
	out, err := sh.Run(`s=$(date +%s%N); systemctl reload cairn; rc=$?; echo "took $(( ($(date +%s%N) - s) / 1000000 )) ms"; exit $rc`)
	sh.MustRun("systemd-analyze log-level " + level)
	reloadJournal := journalAfter(sh, cursor)
	if err != nil {
		t.Fatalf("systemctl reload cairn: %v\njournal since:\n%s", err, reloadJournal)
	}
	reloadTook := strings.TrimSpace(out)
	// No waiting: systemctl reload returns once READY=1 has come, so the new generation is there.
	p = unitProps(sh, "MainPID", "NRestarts", "ActiveState", "SubState", "StatusText")
	if want := fmt.Sprintf("site rack1 generation %d;", gen+1); !strings.HasPrefix(p["StatusText"], want) {
		t.Errorf("right after systemctl reload, StatusText = %q, want it to start %q", p["StatusText"], want)
	}
	if got := appliedGeneration(t, api, 10*time.Second); got != gen+1 {
		t.Errorf("right after systemctl reload, /api/v1/status applied generation %d, want %d", got, gen+1)
	}
	if p["MainPID"] != pid || p["NRestarts"] != restarts || p["ActiveState"] != "active" || p["SubState"] != "running" {
		t.Errorf("after systemctl reload: MainPID=%s NRestarts=%s %s/%s, want the same PID %s, %s restarts, active/running",
			p["MainPID"], p["NRestarts"], p["ActiveState"], p["SubState"], pid, restarts)
	}
	notified := "Got notification message from PID " + pid
	expectInOrder(t, "the journal of systemctl reload", reloadJournal,
		[]string{notified, "RELOADING=1"},
		[]string{notified, "READY=1"},
		[]string{"Reloaded cairn.service"})
	expectInOrder(t, "the journal of systemctl reload", reloadJournal,
		[]string{"cairn[" + pid + "]: site applied", `reason="forced: systemctl reload"`})
	t.Logf("systemctl reload: %s; generation %d applied, same PID %s", reloadTook, gen+1, pid)

	// 3. A hung daemon: SIGSTOP freezes every thread, so nothing feeds the watchdog.
	cursor = journalCursor(sh)
	froze := time.Now()
	out = sh.MustRun(fmt.Sprintf("kill -STOP %[1]s && cut -d' ' -f3 /proc/%[1]s/stat && cut -d' ' -f1 /proc/uptime", pid))
	fields := strings.Fields(out)
	if len(fields) != 2 || fields[0] != "T" {
		t.Fatalf("after kill -STOP %s the process state and uptime are %q, want T (stopped)", pid, out)
	}
	frozeAtUptime, _ := strconv.ParseFloat(fields[1], 64)
	want := strconv.Itoa(atoi(restarts) + 1)
	deadline := time.Now().Add(150 * time.Second) // 30 s of watchdog, then up to TimeoutAbortSec (90 s) if SIGABRT did not end it
	for {
		p = unitProps(sh, "MainPID", "NRestarts", "ActiveState", "SubState", "Result")
		if p["MainPID"] != pid && p["MainPID"] != "0" && p["NRestarts"] == want && p["ActiveState"] == "active" && p["SubState"] == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s after freezing PID %s: MainPID=%s NRestarts=%s %s/%s Result=%s, want a new PID, %s restarts, active/running\njournal since:\n%s",
				time.Since(froze).Round(time.Second), pid, p["MainPID"], p["NRestarts"], p["ActiveState"], p["SubState"], p["Result"], want, journalAfter(sh, cursor))
		}
		time.Sleep(2 * time.Second)
	}
	restartTook := time.Since(froze)
	vm.WaitSerial(daemon.ReadyPrefix, 30*time.Second) // the new daemon's ready line on the console
	newPID := p["MainPID"]
	wdJournal := journalAfter(sh, cursor)
	expectInOrder(t, "the journal of the watchdog restart", wdJournal,
		[]string{"cairn.service: Watchdog timeout (limit 30s)!"},
		[]string{"Killing process " + pid + " (cairn) with signal SIGABRT"},
		[]string{"cairn.service: Failed with result 'watchdog'"},
		[]string{"cairn.service: Scheduled restart job, restart counter is at " + want},
		[]string{"cairn[" + newPID + "]: ready registry="})
	if _, err := sh.Run("test -e /proc/" + pid); !IsExit(err) {
		t.Errorf("the frozen daemon, PID %s, is still there after the restart (%v)", pid, err)
	}
	if got := appliedGeneration(t, api, 30*time.Second); got != gen+2 {
		t.Errorf("after the restart, /api/v1/status applied generation %d, want %d (the new daemon loads the site once)", got, gen+2)
	}
	fired := "?"
	if mt := regexp.MustCompile(`\[\s*([0-9.]+)\] \S+ systemd\[1\]: cairn\.service: Watchdog timeout`).FindStringSubmatch(wdJournal); mt != nil {
		at, _ := strconv.ParseFloat(mt[1], 64)
		fired = (time.Duration((at - frozeAtUptime) * float64(time.Second))).Round(time.Second / 10).String()
	}
	if out := strings.TrimSpace(sh.MustRun("systemctl is-active cairn")); out != "active" {
		t.Errorf("after the watchdog restart, systemctl is-active cairn = %q, want active", out)
	}
	t.Logf("watchdog: PID %s frozen; systemd's watchdog fired %s later and PID %s was active again %s after the freeze",
		pid, fired, newPID, restartTook.Round(time.Second/10))
	t.Logf("timings: boot to READY %s; systemctl reload %s; freeze to restarted and READY %s; whole test %s",
		bootTook.Round(time.Second/10), reloadTook, restartTook.Round(time.Second/10), time.Since(began).Round(time.Second))
}

// unitProps reads properties of cairn.service with systemctl show.
func unitProps(sh *Shell, props ...string) map[string]string {
	out := sh.MustRun("systemctl show cairn -p " + strings.Join(props, ","))
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

// journalCursor is the cursor of cairn.service's newest journal entry.
func journalCursor(sh *Shell) string {
	out := sh.MustRun("journalctl -u cairn -n 1 -q --show-cursor")
	for _, l := range strings.Split(out, "\n") {
		if c, ok := strings.CutPrefix(l, "-- cursor: "); ok {
			return c
		}
	}
	sh.vm.t.Fatalf("journalctl --show-cursor printed no cursor:\n%s", out)
	return ""
}

// journalAfter is cairn.service's journal after cursor: what systemd and the daemon logged
// (the daemon's log lines, not its stdout and stderr, which hold SIGABRT's goroutine dump),
// less the watchdog pings systemd logs at debug level.
func journalAfter(sh *Shell, cursor string) string {
	out, err := sh.Run(fmt.Sprintf(`set -o pipefail; journalctl -u cairn _TRANSPORT=journal --after-cursor='%s' -o short-monotonic | { grep -v 'WATCHDOG=1$' || true; }`, cursor))
	if err != nil {
		return fmt.Sprintf("(reading the journal: %v)", err)
	}
	return out
}

// expectInOrder checks that journal has, in this order, a line holding every string of each step.
func expectInOrder(t *testing.T, what, journal string, steps ...[]string) {
	t.Helper()
	lines := strings.Split(journal, "\n")
	at := 0
	for _, step := range steps {
		found := false
		for ; at < len(lines) && !found; at++ {
			found = true
			for _, s := range step {
				found = found && strings.Contains(lines[at], s)
			}
		}
		if !found {
			t.Errorf("%s lacks a line with %q after the lines before it; it reads:\n%s", what, step, journal)
			return
		}
	}
}

// appliedGeneration reads the applied site generation from the appliance's status API, giving
// the guest's network up to wait to come up.
func appliedGeneration(t *testing.T, url string, wait time.Duration) int64 {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		g, err := getApplied(url)
		if err == nil {
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("the appliance's status API %s: %v", url, err)
		}
		time.Sleep(time.Second)
	}
}

func getApplied(url string) (int64, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %s", resp.Status, body)
	}
	var st struct {
		Generation struct {
			Applied int64 `json:"applied"`
		} `json:"generation"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return 0, fmt.Errorf("%w: %s", err, body)
	}
	return st.Generation.Applied, nil
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
