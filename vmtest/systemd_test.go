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
// command line, adding only systemd's debug shell on a second serial port, with a blank disk
// attached, and checks the appliance from inside, as an operator at its console would:
//
//   - with no data disk it runs ephemeral, and says so on the console and in systemctl status;
//     the operator makes the blank disk its data disk (cairn appliance data init, which refuses
//     to do it twice) and presses reset;
//   - it boots again with /var/lib/cairn on the data disk; cairn.service is active and
//     systemctl status shows the daemon's STATUS= line;
//   - systemctl reload re-reads the site in the same process: the daemon sends RELOADING=1,
//     then READY=1 once the site is applied, and systemctl reload returns only then;
//   - a daemon that hangs (SIGSTOP: the whole process freezes, so no WATCHDOG=1) is killed by
//     systemd for a watchdog timeout, with the unit's shipped WatchdogSec=30s, and restarted,
//     re-doing nothing;
//   - after a site edit, a hard reset (no shutdown) brings back the same generation, the same
//     hosts in the same phases and the same events, and applies nothing again.
func TestApplianceSystemd(t *testing.T) {
	f := applianceISO(t)
	began := time.Now()
	kb, err := KernelFromISO(f.iso, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	vm := New(t, Options{ISO: f.iso, Kernel: &kb, Shell: true, Forward: []int{5000},
		DataDisk: DataDiskImage(t, 512<<20), Resettable: true})
	vm.Start()
	api := "http://" + vm.Addr(5000) + "/api/v1/status"

	// 0. No data disk yet (the disk is blank): ephemeral, on the console and in systemctl status.
	// Boot waits for the data disk's device (90 s) before the daemon starts without it.
	vm.WaitSerial(daemon.ReadyPrefix, readyTimeout+90*time.Second)
	ephemeralBoot := vm.Uptime()
	vm.WaitSerial("cairn: ephemeral: state is lost at reboot", 10*time.Second)
	sh := vm.Shell(60 * time.Second)
	if status := sh.MustRun("systemctl status cairn --no-pager --full"); !strings.Contains(status, `Status: "ephemeral: state is lost at reboot (no data disk at /var/lib/cairn)`) {
		t.Errorf("systemctl status cairn without a data disk does not say it is ephemeral:\n%s", status)
	}
	if st := apiStatus(t, api, 60*time.Second); !strings.Contains(st.Ephemeral, "ephemeral") {
		t.Errorf("/api/v1/status without a data disk: ephemeral = %q", st.Ephemeral)
	}
	// The operator prepares the disk, which refuses to be prepared twice, and resets.
	out := sh.MustRun("cairn appliance data init /dev/vda")
	t.Logf("cairn appliance data init /dev/vda: %s", strings.TrimSpace(out))
	if out, err := sh.Run("cairn appliance data init /dev/vda"); !IsExit(err) || !strings.Contains(out, "not blank") {
		t.Errorf("a second cairn appliance data init /dev/vda = %v: %s; want a refusal", err, out)
	}
	sh.Close()
	vm.Reset()

	// 1. With its data disk, the unit as shipped is active, and shows what the daemon last told systemd.
	vm.WaitSerial(daemon.ReadyPrefix, readyTimeout)
	bootTook := vm.Uptime()
	sh = vm.Shell(60 * time.Second)
	if src := strings.TrimSpace(sh.MustRun("findmnt -n -o SOURCE,FSTYPE,LABEL /var/lib/cairn")); !strings.HasPrefix(src, "/dev/vda ext4") {
		t.Errorf("/var/lib/cairn is mounted from %q, want the data disk /dev/vda (ext4)", src)
	}
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
		t.Fatalf("systemctl status cairn shows no STATUS= line of the example site's generation and hosts (or still says ephemeral):\n%s", status)
	}
	// The provisioning interface of the example site (eth1, not in this VM) is configured
	// through networkd, and DHCP and TFTP say they wait for it.
	if nw := sh.MustRun("cat /run/systemd/network/10-cairn-provisioning.network"); !strings.Contains(nw, "Name=eth1") || !strings.Contains(nw, "Address=10.20.0.1/24") {
		t.Errorf("the provisioning interface's networkd file:\n%s", nw)
	}
	if st := unitProps(sh, "StatusText")["StatusText"]; strings.Contains(st, "network not configured") || !strings.Contains(st, `DHCP not serving: network.interface = "eth1"`) {
		t.Errorf("STATUS= says of the provisioning network: %s", st)
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
	out, err = sh.Run(`s=$(date +%s%N); systemctl reload cairn; rc=$?; echo "took $(( ($(date +%s%N) - s) / 1000000 )) ms"; exit $rc`)
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
		[]string{"cairn[" + pid + "]: site applied", `reason="systemctl reload"`})
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
	if got := appliedGeneration(t, api, 30*time.Second); got != gen+1 {
		t.Errorf("after the restart, /api/v1/status applied generation %d, want %d (the new daemon re-does nothing)", got, gen+1)
	}
	expectInOrder(t, "the journal of the watchdog restart", wdJournal,
		[]string{"cairn[" + newPID + "]: site unchanged since generation " + strconv.FormatInt(gen+1, 10) + "; nothing to apply"})
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

	// 4. A site edit, then a hard reset: everything comes back as it was, nothing is applied again.
	sh.MustRun("cairn host reprovision web-01 --site /var/lib/cairn/site")
	deadline = time.Now().Add(30 * time.Second)
	for appliedGeneration(t, api, 10*time.Second) != gen+2 {
		if time.Now().After(deadline) {
			t.Fatalf("the reprovision edit was not applied as generation %d within 30s", gen+2)
		}
		time.Sleep(500 * time.Millisecond)
	}
	before := snapshot(t, "http://"+vm.Addr(5000))
	sh.Close()
	vm.Reset()
	vm.WaitSerial(daemon.ReadyPrefix, readyTimeout)
	resetBoot := vm.Uptime()
	after := snapshot(t, "http://"+vm.Addr(5000))
	if after.status.Ephemeral != "" {
		t.Errorf("after the reset the appliance is ephemeral: %s", after.status.Ephemeral)
	}
	if after.status.Generation != before.status.Generation {
		t.Errorf("after the reset the generation is %+v, want %+v as before it", after.status.Generation, before.status.Generation)
	}
	if after.hosts != before.hosts {
		t.Errorf("after the reset the hosts are\n%s\nwant as before it\n%s", after.hosts, before.hosts)
	}
	if after.events != before.events {
		t.Errorf("after the reset the events are\n%s\nwant as before it (nothing applied again)\n%s", after.events, before.events)
	}
	if !strings.Contains(before.hosts, `"web-01" provision 1 pending`) {
		t.Errorf("before the reset web-01 is not pending with provision 1:\n%s", before.hosts)
	}
	sh = vm.Shell(60 * time.Second)
	if j := sh.MustRun("journalctl -b -u cairn _TRANSPORT=journal -o cat"); !strings.Contains(j, fmt.Sprintf("site unchanged since generation %d; nothing to apply", gen+2)) {
		t.Errorf("after the reset the daemon's journal does not say it found nothing to apply:\n%s", j)
	}
	t.Logf("reset: generation %d, %d events, the same before and after", after.status.Generation.Applied, strings.Count(after.events, "\n"))
	t.Logf("timings: ephemeral boot to READY %s; boot with the data disk to READY %s; systemctl reload %s; freeze to restarted and READY %s; reset to READY %s; whole test %s",
		ephemeralBoot.Round(time.Second/10), bootTook.Round(time.Second/10), reloadTook, restartTook.Round(time.Second/10), resetBoot.Round(time.Second/10), time.Since(began).Round(time.Second))
}

// appliance is what the appliance's API says of its state, as text to compare.
type applianceState struct {
	status statusDoc
	hosts  string // a line per host: name, provision, phase
	events string // a line per event: seq, host, kind, message
}

type statusDoc struct {
	Ephemeral  string `json:"ephemeral"`
	Generation struct {
		Applied            int64  `json:"applied"`
		Attempted          int64  `json:"attempted"`
		AppliedFingerprint string `json:"applied_fingerprint"`
	} `json:"generation"`
}

func snapshot(t *testing.T, base string) applianceState {
	t.Helper()
	var s applianceState
	s.status = apiStatus(t, base+"/api/v1/status", 60*time.Second)
	var hosts []struct {
		Name      string `json:"name"`
		Phase     string `json:"phase"`
		Provision int    `json:"provision"`
	}
	getJSON(t, base+"/api/v1/hosts", &hosts)
	for _, h := range hosts {
		s.hosts += fmt.Sprintf("%q provision %d %s\n", h.Name, h.Provision, h.Phase)
	}
	var events []struct {
		Seq     uint64 `json:"seq"`
		Host    string `json:"host"`
		Kind    string `json:"kind"`
		Message string `json:"message"`
	}
	getJSON(t, base+"/api/v1/events?limit=1000", &events)
	for _, e := range events {
		s.events += fmt.Sprintf("%d %s %s %s\n", e.Seq, e.Host, e.Kind, e.Message)
	}
	return s
}

// apiStatus reads the appliance's status API, giving the guest's network up to wait to come up.
func apiStatus(t *testing.T, url string, wait time.Duration) statusDoc {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		var st statusDoc
		err := tryJSON(url, &st)
		if err == nil {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("the appliance's status API %s: %v", url, err)
		}
		time.Sleep(time.Second)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	if err := tryJSON(url, v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func tryJSON(url string, v any) error {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%w: %s", err, body)
	}
	return nil
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
