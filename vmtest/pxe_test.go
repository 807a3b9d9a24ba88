package vmtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/agent/initramfs"
	"github.com/cairn-appliance/cairn/agent/netboot"
	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/appliance"
	"github.com/cairn-appliance/cairn/daemon"
	daemonapi "github.com/cairn-appliance/cairn/daemon/api"
	"github.com/cairn-appliance/cairn/daemon/boot"
	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/examples/content"
)

// The PXE lab: a network namespace holding a bridge with the appliance's address, the real
// cairn daemon serving DHCP, TFTP and HTTP on it, and one tap per VM. Nothing leaves the
// namespace: the VMs' only network is their tap, and the test reaches the daemon from a
// thread inside the namespace.
const (
	pxeBridge  = "cairnpxe0"
	pxeIP      = "10.20.0.1"
	pxeServer  = "http://" + pxeIP + ":5000"
	pxeNetns   = "cairn-pxe-" // + PID
	macUnknown = "52:54:00:50:00:01"
	macPending = "52:54:00:50:00:0a"
	macDone    = "52:54:00:50:00:0c"
	// diskMarker is what the local disk's boot sector prints on the serial port.
	diskMarker = "cairn-vmtest: booted from the local disk"
)

// pxeSite is the lab's site: a pending host (MAC A), a host the test marks provisioned
// (MAC C), and room for machines the site does not name.
var pxeSite = map[string]string{
	"site.toml": `[site]
name = "pxelab"
domain = "pxelab.internal"

[network]
interface = "` + pxeBridge + `"
cidr = "10.20.0.0/24"
appliance_ip = "` + pxeIP + `"
dhcp = "full"
dhcp_range = { start = "10.20.0.200", end = "10.20.0.249" }

[defaults]
os = "` + osImageName + `"
disk = "first-nonremovable"
`,
	"hosts/pxe-a.toml": "mac = \"" + macPending + "\"\nip = \"10.20.0.10\"\n",
	"hosts/pxe-c.toml": "mac = \"" + macDone + "\"\nip = \"10.20.0.12\"\n",
}

// TestPXE boots machines from the network against the real cairn daemon, one at a time, in a
// network namespace of their own:
//
//   - an unknown machine under SeaBIOS, whose NIC ROM is QEMU's iPXE: DHCP → iPXE → its
//     script → the agent's kernel and initramfs from the store → the agent reports its
//     inventory and powers off; the daemon shows a discovered host with the inventory and a
//     host file to paste;
//   - a pending host under OVMF with no NIC ROM, as a real machine boots: the firmware's own
//     UEFI PXE → ipxe.efi by TFTP → iPXE → its script with a provisioning token → the agent
//     fetches the plan and reports that it cannot write disks yet; the host goes provisioning,
//     then failed with that reason;
//   - a provisioned host under SeaBIOS: the script boots its local disk, whose boot sector
//     prints a line, and no agent starts.
//
// It logs the times from power-on. It needs root (namespaces, taps) and the VM tier.
func TestPXE(t *testing.T) {
	SkipUnlessEnabled(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: it makes a network namespace, a bridge and taps (ip netns, ip tuntap); run make vmtest as root")
	}
	began := time.Now()
	f := netbootFixture(t)
	lab := newPXELab(t, f)
	lab.markProvisioned(t, macDone, "pxe-c")
	t.Logf("PXE lab ready %s after the test began (fixture and daemon)", time.Since(began).Round(time.Second))

	t.Run("unknown machine, SeaBIOS with QEMU's iPXE, is discovered", func(t *testing.T) {
		vm := New(t, Options{NetBoot: true, Firmware: BIOS, Tap: lab.tap(t), Netns: lab.ns, MAC: macUnknown,
			MemoryMiB: 512, DataDisk: DataDiskImage(t, 1<<30), DataDiskSerial: "pxe-disk-u"})
		vm.Start()
		vm.WaitSerial("cairn-agent: netboot discover on "+macUnknown, 6*time.Minute)
		marker := vm.Uptime()
		vm.WaitSerial("cairn-agent: discovered, reported to "+pxeServer, 2*time.Minute)
		reported := vm.Uptime()
		off := vm.WaitExit(time.Minute)
		t.Logf("SeaBIOS + iPXE, unknown MAC: marker line %s after power-on, discovered %s, powered off %s",
			marker.Round(time.Second/10), reported.Round(time.Second/10), off.Round(time.Second/10))

		h := lab.host(t, "discovered-"+strings.ReplaceAll(macUnknown, ":", ""))
		if h.Phase != state.Discovered {
			t.Errorf("the machine's record is %s, want discovered", h.Phase)
		}
		var inv api.Inventory
		if err := json.Unmarshal(h.Inventory, &inv); err != nil {
			t.Fatalf("the recorded inventory %s: %v", h.Inventory, err)
		}
		if inv.MAC != macUnknown || inv.Firmware != api.BIOS || inv.MemoryBytes < 400<<20 || inv.CPU.Threads < 1 || inv.AgentVersion != "vmtest" {
			t.Errorf("inventory: %+v", inv)
		}
		if len(inv.NICs) != 1 || inv.NICs[0].MAC != macUnknown || inv.NICs[0].Driver != "virtio_net" || len(inv.NICs[0].Addresses) == 0 {
			t.Errorf("inventory NICs: %+v", inv.NICs)
		}
		wantByID := "/dev/disk/by-id/virtio-pxe-disk-u"
		if len(inv.Disks) != 1 || inv.Disks[0].SizeBytes != 1<<30 || inv.Disks[0].Serial != "pxe-disk-u" || len(inv.Disks[0].ByID) == 0 || inv.Disks[0].ByID[0] != wantByID {
			t.Errorf("inventory disks: %+v", inv.Disks)
		}
		for _, want := range []string{`mac = "` + macUnknown + `"`, `disk = "` + wantByID + `"`} {
			if !strings.Contains(h.Snippet, want) {
				t.Errorf("the snippet lacks %s:\n%s", want, h.Snippet)
			}
		}
		t.Logf("the daemon's host file for it:\n%s", h.Snippet)
		lab.expectLog(t, `msg="boot script" mac=`+macUnknown+` host="" platform=pcbios script=agent`)
		// SeaBIOS copies the screen to the serial port: QEMU's iPXE ROM fetched the script and
		// the agent's kernel and initramfs.
		expectSerial(t, vm, "iPXE", "Filename: "+pxeServer+"/boot/ipxe?mac="+macUnknown+"&platform=pcbios",
			pxeServer+"/boot/netboot/"+boot.DefaultKernel+"... ok", pxeServer+"/boot/netboot/"+boot.DefaultInitramfs+"... ok")
	})

	t.Run("pending host, OVMF's own PXE, is provisioned and fails", func(t *testing.T) {
		vm := New(t, Options{NetBoot: true, Firmware: UEFI, NoNICROM: true, Tap: lab.tap(t), Netns: lab.ns, MAC: macPending,
			MemoryMiB: 512, DataDisk: DataDiskImage(t, 1<<30), DataDiskSerial: "pxe-disk-a"})
		vm.Start()
		vm.WaitSerial("cairn-agent: netboot provision on "+macPending, 8*time.Minute)
		marker := vm.Uptime()
		vm.WaitSerial("cairn-agent: plan for pxe-a", 2*time.Minute)
		vm.WaitSerial("cairn-agent: reported failed to "+pxeServer+": "+netboot.NotImplemented, time.Minute)
		failed := vm.Uptime()
		off := vm.WaitExit(time.Minute)
		t.Logf("OVMF PXE → ipxe.efi, pending host: marker line %s after power-on, reported failed %s, powered off %s",
			marker.Round(time.Second/10), failed.Round(time.Second/10), off.Round(time.Second/10))

		h := lab.host(t, "pxe-a")
		if h.Phase != state.Failed || !strings.Contains(h.Reason, netboot.NotImplemented) {
			t.Errorf("pxe-a: phase %s, reason %q; want failed with %q", h.Phase, h.Reason, netboot.NotImplemented)
		}
		var kinds []string
		for _, e := range h.Events { // oldest first
			kinds = append(kinds, e.Kind)
		}
		if got := strings.Join(kinds, " "); !regexp.MustCompile(`host\.inventory.* host\.provisioning.* host\.failed`).MatchString(got) {
			t.Errorf("pxe-a's events: %s; want the inventory, then provisioning, then failed", got)
		}
		lab.expectLog(t, `msg="tftp transfer"`, `file=ipxe.efi`)
		lab.expectLog(t, `msg="boot script" mac=`+macPending+` host=pxe-a platform=efi script=agent`)
		// OVMF's own PXE loaded ipxe.efi, which asked DHCP again and got the script.
		expectSerial(t, vm, ">>Start PXE over IPv4", "NBP filename is ipxe.efi", "NBP file downloaded successfully",
			"Filename: "+pxeServer+"/boot/ipxe?mac="+macPending+"&platform=efi", pxeServer+"/boot/netboot/"+boot.DefaultInitramfs+"... ok")
	})

	t.Run("provisioned host, SeaBIOS, boots its local disk", func(t *testing.T) {
		disk := DataDiskImage(t, 64<<20)
		if err := writeBootSector(disk, diskMarker); err != nil {
			t.Fatal(err)
		}
		vm := New(t, Options{NetBoot: true, Firmware: BIOS, Tap: lab.tap(t), Netns: lab.ns, MAC: macDone,
			MemoryMiB: 512, DataDisk: disk, DataDiskSerial: "pxe-disk-c"})
		vm.Start()
		vm.WaitSerial(diskMarker, 4*time.Minute)
		t.Logf("SeaBIOS + iPXE, provisioned host: its disk's boot sector ran %s after power-on", vm.Uptime().Round(time.Second/10))
		lab.expectLog(t, `msg="boot script" mac=`+macDone+` host=pxe-c platform=pcbios script=local-pcbios`)
		// iPXE ran the local boot script: sanboot of BIOS drive 0x80.
		expectSerial(t, vm, "cairn: pxe-c ("+macDone+") is provisioned: booting from its local disk", "Booting from SAN device 0x8")
		if b, _ := os.ReadFile(vm.SerialLog()); bytes.Contains(b, []byte("cairn-agent:")) || bytes.Contains(b, []byte("/boot/netboot/")) {
			t.Errorf("the provisioned host fetched or started the agent:\n%s", tail(b, 20))
		}
	})
	t.Logf("TestPXE took %s", time.Since(began).Round(time.Second))
}

// netbootFix is what the PXE lab serves: a store with the iPXE binaries, the appliance base's
// kernel as vmlinuz, the agent's initramfs and an OS image; and the cairn binary.
type netbootFix struct {
	work  string
	cairn string
	store string
}

var (
	nbOnce sync.Once
	nbFix  *netbootFix
	nbErr  error
)

func netbootFixture(t *testing.T) *netbootFix {
	t.Helper()
	nbOnce.Do(func() { nbFix, nbErr = makeNetbootFixture(context.Background()) })
	if nbErr != nil {
		t.Fatal(nbErr)
	}
	return nbFix
}

func makeNetbootFixture(ctx context.Context) (*netbootFix, error) {
	start := time.Now()
	work, err := os.MkdirTemp("", "cairn-vmtest-netboot-")
	if err != nil {
		return nil, err
	}
	cleanupDirs = append(cleanupDirs, work)
	f := &netbootFix{work: work, cairn: filepath.Join(work, "cairn"), store: filepath.Join(work, "store")}

	logPath := filepath.Join(work, "appliance-base.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	base, err := appliance.Build(ctx, appliance.BuildConfig{Log: logf})
	logf.Close()
	if err != nil {
		b, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("%w; the build's last lines:\n%s", err, tail(b, 40))
	}
	SetProbeKernel(filepath.Join(base, appliance.KernelFile))

	agent := filepath.Join(work, "cairn-agent")
	for _, b := range []struct{ out, pkg, ldflags string }{
		{f.cairn, "./cmd/cairn", ""},
		{agent, "./cmd/cairn-agent", "-s -w -X main.version=vmtest"},
	} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", b.ldflags, "-o", b.out, b.pkg)
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building %s: %w\n%s", b.pkg, err, out)
		}
	}

	// The initramfs: the agent as /init with the base kernel's own modules.
	mods, err := initramfs.ModulesFromSquashfs(ctx, filepath.Join(base, appliance.RootFile), filepath.Join(work, "modules"), initramfs.DefaultModules)
	if err != nil {
		return nil, err
	}
	initrd := filepath.Join(work, boot.DefaultInitramfs)
	out, err := os.Create(initrd)
	if err != nil {
		return nil, err
	}
	err = initramfs.Write(out, initramfs.Config{Agent: agent, Modules: mods, ModTime: time.Unix(sourceDate, 0)})
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}

	// The store, written as cairn build writes one.
	st, err := airgap.Create(ctx, airgap.StoreConfig{Dir: f.store, Created: time.Unix(sourceDate, 0)})
	if err != nil {
		return nil, err
	}
	ipxe, err := content.IPXE(ctx)
	if err != nil {
		return nil, err
	}
	for _, b := range content.IPXEBinaries {
		p := filepath.Join(work, b.Name)
		if err := os.WriteFile(p, ipxe[b.Name], 0o644); err != nil {
			return nil, err
		}
		if err := st.AddNetboot(ctx, airgap.NetbootAsset{Name: b.Name, Path: p, Type: airgap.NetbootIPXE}); err != nil {
			return nil, err
		}
	}
	if err := st.AddNetboot(ctx, airgap.NetbootAsset{Name: boot.DefaultKernel, Path: filepath.Join(base, appliance.KernelFile), Type: airgap.NetbootKernel}); err != nil {
		return nil, err
	}
	if err := st.AddNetboot(ctx, airgap.NetbootAsset{Name: boot.DefaultInitramfs, Path: initrd, Type: airgap.NetbootInitramfs}); err != nil {
		return nil, err
	}
	osImage, err := content.OSImage()
	if err != nil {
		return nil, err
	}
	osPath := filepath.Join(work, osImageName+".raw.zst")
	if err := os.WriteFile(osPath, osImage, 0o644); err != nil {
		return nil, err
	}
	if err := st.AddOSImage(ctx, airgap.OSImage{Name: osImageName, Path: osPath}); err != nil {
		return nil, err
	}
	keyPEM, _, err := airgap.GenerateKey()
	if err != nil {
		return nil, err
	}
	key, err := airgap.ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, err
	}
	if _, err := st.Seal(ctx, key); err != nil {
		return nil, err
	}
	fi, _ := os.Stat(initrd)
	fmt.Fprintf(os.Stderr, "vmtest: netboot store %s with the agent's initramfs (%d KiB, %d modules) (%s)\n",
		f.store, fi.Size()>>10, len(mods), time.Since(start).Round(time.Second))
	return f, nil
}

// pxeLab is the namespace, its bridge and taps, and the daemon running in it.
type pxeLab struct {
	ns     string
	dir    string
	log    string // the daemon's log
	taps   int
	hc     *http.Client
	client *daemonapi.Client
}

func newPXELab(t *testing.T, f *netbootFix) *pxeLab {
	t.Helper()
	removeStaleNetns(pxeNetns)
	l := &pxeLab{ns: fmt.Sprintf("%s%d", pxeNetns, os.Getpid()), dir: keptDir(t, "daemon")}
	if out, err := exec.Command("ip", "netns", "add", l.ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", l.ns, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", l.ns).Run() }) // its taps and bridge go with it
	l.ip(t, "link", "set", "lo", "up")
	l.ip(t, "link", "add", pxeBridge, "type", "bridge")
	l.ip(t, "addr", "add", pxeIP+"/24", "dev", pxeBridge)
	l.ip(t, "link", "set", pxeBridge, "up")
	l.hc = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dialIn(l.ns), DisableKeepAlives: true}}
	var err error
	if l.client, err = daemonapi.NewClient(pxeServer, l.hc); err != nil {
		t.Fatal(err)
	}

	siteDir := filepath.Join(l.dir, "site")
	for name, body := range pxeSite {
		p := filepath.Join(siteDir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(l.dir, "daemon.toml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "store = %q\nsite_dir = %q\nstate = %q\ndata_dir = %q\nlisten = \":5000\"\nallow_ephemeral = true\npxe = true\n",
		f.store, siteDir, filepath.Join(l.dir, "state", "state.db"), filepath.Join(l.dir, "data")), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout := filepath.Join(l.dir, "daemon.out")
	l.log = filepath.Join(l.dir, "daemon.log")
	outf, err := os.Create(stdout)
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(l.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", l.ns, f.cairn, "daemon", "--config", cfg) //nolint:gosec // G204: our binary and paths
	cmd.Stdout, cmd.Stderr = outf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting cairn daemon in %s: %v", l.ns, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); outf.Close(); logf.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(unix.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Logf("cairn daemon: %v", err)
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("cairn daemon did not stop within 15 s of SIGTERM")
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(stdout)
		if bytes.Contains(b, []byte(daemon.ReadyPrefix)) {
			t.Logf("cairn daemon in %s: %s", l.ns, strings.TrimSpace(string(b)))
			break
		}
		select {
		case err := <-exited:
			lb, _ := os.ReadFile(l.log)
			t.Fatalf("cairn daemon exited (%v) before it was ready:\n%s%s", err, b, tail(lb, 30))
		default:
		}
		if time.Now().After(deadline) {
			lb, _ := os.ReadFile(l.log)
			t.Fatalf("cairn daemon was not ready within 60 s:\n%s", tail(lb, 30))
		}
		time.Sleep(200 * time.Millisecond)
	}
	// DHCP and TFTP start once the site is applied, which READY follows; wait until they say so.
	l.waitLog(t, 30*time.Second, "dhcp: serving")
	l.waitLog(t, 30*time.Second, "tftp: serving")
	return l
}

func (l *pxeLab) ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", l.ns}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", l.ns, strings.Join(args, " "), err, out)
	}
}

// tap makes a new tap on the bridge for one VM.
func (l *pxeLab) tap(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("pxetap%d", l.taps)
	l.taps++
	l.ip(t, "tuntap", "add", "dev", name, "mode", "tap")
	l.ip(t, "link", "set", name, "master", pxeBridge, "up")
	return name
}

// markProvisioned provisions a site host through the daemon's own paths: it asks for the
// host's boot script (which mints a provisioning token, as for a booting machine) and reports
// done with that token, as an agent that wrote the disk would.
func (l *pxeLab) markProvisioned(t *testing.T, mac, name string) {
	t.Helper()
	script := l.get(t, pxeServer+"/boot/ipxe?mac="+mac+"&platform=pcbios")
	m := regexp.MustCompile(api.ArgToken + `=([A-Za-z0-9_-]+)`).FindStringSubmatch(script)
	if m == nil {
		t.Fatalf("the boot script of %s carries no token:\n%s", mac, script)
	}
	req, err := http.NewRequest(http.MethodPost, pxeServer+api.Path(mac, api.CallDone), strings.NewReader(`{"message":"marked provisioned by the test"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+m[1])
	resp, err := l.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reporting %s done: %s: %s", name, resp.Status, b)
	}
	if h := l.host(t, name); h.Phase != state.Provisioned {
		t.Fatalf("%s is %s after done, want provisioned", name, h.Phase)
	}
}

func (l *pxeLab) get(t *testing.T, url string) string {
	t.Helper()
	resp, err := l.hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	return string(b)
}

func (l *pxeLab) host(t *testing.T, name string) daemonapi.HostDetail {
	t.Helper()
	h, err := l.client.Host(context.Background(), name)
	if err != nil {
		t.Fatalf("the daemon's API on host %s: %v", name, err)
	}
	return h
}

// expectLog checks that one line of the daemon's log holds every piece of want.
func (l *pxeLab) expectLog(t *testing.T, want ...string) {
	t.Helper()
	b, _ := os.ReadFile(l.log)
	for _, line := range strings.Split(string(b), "\n") {
		if containsAll(line, want) {
			return
		}
	}
	t.Errorf("the daemon's log has no line with %q; its last lines:\n%s", want, tail(b, 20))
}

func (l *pxeLab) waitLog(t *testing.T, timeout time.Duration, want ...string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(l.log)
		for _, line := range strings.Split(string(b), "\n") {
			if containsAll(line, want) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon's log has no line with %q after %s:\n%s", want, timeout, tail(b, 20))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// expectSerial checks that the VM's serial console showed every piece of want.
func expectSerial(t *testing.T, vm *VM, want ...string) {
	t.Helper()
	b, _ := os.ReadFile(vm.SerialLog())
	for _, w := range want {
		if !bytes.Contains(b, []byte(w)) {
			t.Errorf("the serial console did not show %q", w)
		}
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// dialIn dials from a thread inside network namespace ns: the connection's socket belongs to
// the namespace, wherever it is used afterwards.
func dialIn(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		done := make(chan result, 1)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			f, err := os.Open("/var/run/netns/" + ns)
			if err == nil {
				err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET) //nolint:gosec // an fd
				f.Close()
			}
			if err != nil {
				done <- result{nil, fmt.Errorf("entering network namespace %s: %w", ns, err)}
				return
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			done <- result{c, err}
		}()
		r := <-done
		return r.c, r.err
	}
}

// removeStaleNetns deletes the namespaces named prefix+PID of test processes that died before
// their cleanup ran, with what still runs in them (that test's daemon and QEMU).
func removeStaleNetns(prefix string) {
	entries, _ := os.ReadDir("/var/run/netns")
	for _, e := range entries {
		pid, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue // its process is alive: its own
		}
		out, _ := exec.Command("ip", "netns", "pids", e.Name()).Output()
		for _, f := range strings.Fields(string(out)) {
			if p, err := strconv.Atoi(f); err == nil && p > 1 {
				_ = unix.Kill(p, unix.SIGKILL)
			}
		}
		_ = exec.Command("ip", "netns", "del", e.Name()).Run()
	}
}

// writeBootSector makes disk's first sector a BIOS boot sector that prints msg on the first
// serial port (polling its line status, as firmware leaves it) and halts: proof that the
// firmware, or iPXE's sanboot, booted the local disk.
func writeBootSector(disk, msg string) error {
	code := []byte{
		0xFA,       // cli
		0x31, 0xC0, // xor ax, ax
		0x8E, 0xD8, // mov ds, ax
		0xBE, 0x22, 0x7C, // mov si, 0x7c22 (the message, after this code)
		0xAC,       // next: lodsb
		0x84, 0xC0, // test al, al
		0x74, 0x12, // jz done
		0x88, 0xC3, // mov bl, al
		0xBA, 0xFD, 0x03, // mov dx, 0x3fd (line status)
		0xEC,       // wait: in al, dx
		0xA8, 0x20, // test al, 0x20 (transmitter empty)
		0x74, 0xFB, // jz wait
		0xBA, 0xF8, 0x03, // mov dx, 0x3f8
		0x88, 0xD8, // mov al, bl
		0xEE,       // out dx, al
		0xEB, 0xE9, // jmp next
		0xF4,       // done: hlt
		0xEB, 0xFD, // jmp done
	}
	if len(code) != 0x22 {
		return fmt.Errorf("boot sector code is %d bytes, the message offset assumes 34", len(code))
	}
	sector := make([]byte, 512)
	n := copy(sector, code)
	copy(sector[n:], "\r\n"+msg+"\r\n\x00")
	sector[510], sector[511] = 0x55, 0xAA
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(sector, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
