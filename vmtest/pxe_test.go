package vmtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	"github.com/cairn-appliance/cairn/agent/disk"
	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/appliance"
	"github.com/cairn-appliance/cairn/daemon"
	daemonapi "github.com/cairn-appliance/cairn/daemon/api"
	"github.com/cairn-appliance/cairn/daemon/boot"
	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/examples/content"
	"github.com/cairn-appliance/cairn/examples/hostimage"
)

// The PXE lab: a network namespace holding a bridge with the appliance's address, the real
// cairn daemon serving DHCP, TFTP and HTTP on it, and one tap per VM. Nothing leaves the
// namespace: the VMs' only network is their tap, and the test reaches the daemon (and the
// hosts' SSH) from inside the namespace.
const (
	pxeBridge  = "cairnpxe0"
	pxeIP      = "10.20.0.1"
	pxeServer  = "http://" + pxeIP + ":5000"
	pxeNetns   = "cairn-pxe-" // + PID
	macUnknown = "52:54:00:50:00:01"
	macUEFI    = "52:54:00:50:00:0a"
	macBIOS    = "52:54:00:50:00:0b"
	ipUEFI     = "10.20.0.10"
	ipBIOS     = "10.20.0.11"
	// hostOS is the host image's name in the lab's store and site.
	hostOS = "debian-13"
	// hostDisk is the size of each host's empty virtio disk.
	hostDisk = 4 << 30
)

// pxeSite is the lab's site: two pending hosts, one for each firmware, and room for machines
// the site does not name. Its SSH key is the test's.
func pxeSite(sshKey string) map[string]string {
	return map[string]string{
		"site.toml": `[site]
name = "pxelab"
domain = "pxelab.internal"

[network]
interface = "` + pxeBridge + `"
cidr = "10.20.0.0/24"
appliance_ip = "` + pxeIP + `"
dns = ["` + pxeIP + `"]
ntp = ["` + pxeIP + `"]
dhcp = "full"
dhcp_range = { start = "10.20.0.200", end = "10.20.0.249" }

[defaults]
os = "` + hostOS + `"
disk = "first-nonremovable"
timezone = "UTC"
ssh_authorized_keys = ["` + sshKey + `"]
`,
		"hosts/pxe-a.toml": "mac = \"" + macUEFI + "\"\nip = \"" + ipUEFI + "\"\n",
		"hosts/pxe-b.toml": "mac = \"" + macBIOS + "\"\nip = \"" + ipBIOS + "\"\n",
	}
}

// TestPXE boots machines from the network against the real cairn daemon, one at a time, in a
// network namespace of their own, with a store that cairn build made (the agent's kernel and
// initramfs from Debian's kernel package, the example host image, iPXE):
//
//   - an unknown machine under SeaBIOS, whose NIC ROM is QEMU's iPXE: DHCP → iPXE → its
//     script → the agent's kernel and initramfs → the agent reports its inventory; the daemon
//     shows a discovered host with the inventory and a host file to paste;
//   - a host under OVMF with no NIC ROM, as a real machine boots: the firmware's own UEFI PXE
//     → ipxe.efi by TFTP → iPXE → its script with a provisioning token → the agent writes and
//     checks the host image and the configdrive, reports done and reboots; the script now
//     sends it to its disk, Debian boots, cloud-init names it and the site's SSH key logs in;
//   - a host under SeaBIOS powered off half-way through the write: its next boot is the agent
//     again, which writes the image whole; then Debian as above;
//   - the appliance's state wiped (a restored or replaced appliance): that host PXE-boots, the
//     agent finds its own configdrive and the host is adopted, its disk not written.
//
// It logs the time of each phase from power-on. It needs root (namespaces, taps) and the VM
// tier.
func TestPXE(t *testing.T) {
	SkipUnlessEnabled(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: it makes a network namespace, a bridge and taps (ip netns, ip tuntap); run make vmtest as root")
	}
	began := time.Now()
	f := netbootFixture(t)
	lab := newPXELab(t, f)
	t.Logf("PXE lab ready %s after the test began (fixture and daemon)", time.Since(began).Round(time.Second))

	t.Run("unknown machine, SeaBIOS with QEMU's iPXE, is discovered", func(t *testing.T) {
		vm := New(t, Options{NetBoot: true, Firmware: BIOS, Tap: lab.tap(t), Netns: lab.ns, MAC: macUnknown,
			MemoryMiB: 512, DataDisk: DataDiskImage(t, 1<<30), DataDiskSerial: "pxe-disk-u"})
		vm.Start()
		defer vm.Stop()
		vm.WaitSerial("cairn-agent: netboot discover on "+macUnknown, 6*time.Minute)
		marker := vm.Uptime()
		vm.WaitSerial("cairn-agent: discovered, reported to "+pxeServer, 2*time.Minute)
		t.Logf("SeaBIOS + iPXE, unknown MAC: marker line %s after power-on, discovered %s",
			marker.Round(time.Second/10), vm.Uptime().Round(time.Second/10))

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

	// The hosts' disks belong to the whole test: the last subtest reads one again.
	diskA, diskB := DataDiskImage(t, hostDisk), DataDiskImage(t, hostDisk)
	provisionedB := false
	t.Run("UEFI host, OVMF's own PXE, is provisioned and boots Debian", func(t *testing.T) {
		vm := New(t, Options{NetBoot: true, Firmware: UEFI, NoNICROM: true, Tap: lab.tap(t), Netns: lab.ns, MAC: macUEFI,
			MemoryMiB: 1024, DataDisk: diskA, DataDiskSerial: "pxe-disk-a", Resettable: true})
		vm.Start()
		defer vm.Stop()
		ph := provisionPhases(t, vm, "pxe-a", macUEFI)
		ph.osUp(t, vm, "pxe-a")
		t.Logf("UEFI (OVMF PXE → ipxe.efi) host, time from power-on: %s", ph)
		lab.checkProvisioned(t, "pxe-a", f.host.UncompressedSHA256)
		lab.checkSSH(t, f, ipUEFI, "pxe-a")
		lab.expectLog(t, `msg="tftp transfer"`, `file=ipxe.efi`)
		lab.expectLog(t, `msg="boot script" mac=`+macUEFI+` host=pxe-a platform=efi script=local-efi`)
		expectSerial(t, vm, ">>Start PXE over IPv4", "NBP filename is ipxe.efi", "Filename: "+pxeServer+"/boot/ipxe?mac="+macUEFI+"&platform=efi")
	})

	t.Run("BIOS host powered off half-way, then provisioned whole, boots Debian", func(t *testing.T) {
		tap := lab.tap(t)
		opts := Options{NetBoot: true, Firmware: BIOS, Tap: tap, Netns: lab.ns, MAC: macBIOS,
			MemoryMiB: 1024, DataDisk: diskB, DataDiskSerial: "pxe-disk-b", Resettable: true}
		cut := New(t, opts)
		cut.Start()
		cut.WaitSerial("cairn-agent: writing "+hostOS, 8*time.Minute)
		cut.WaitSerial(" MB/s", 5*time.Minute) // a progress line: the image is streaming
		cut.Stop()                             // the power cord
		t.Logf("BIOS host powered off %s after power-on, while writing", cut.Uptime().Round(time.Second/10))
		if h := lab.host(t, "pxe-b"); h.Phase != state.Provisioning {
			t.Fatalf("pxe-b is %s after the cut, want provisioning", h.Phase)
		}

		vm := New(t, opts)
		vm.Start()
		defer vm.Stop()
		ph := provisionPhases(t, vm, "pxe-b", macBIOS)
		ph.osUp(t, vm, "pxe-b")
		t.Logf("BIOS (SeaBIOS + iPXE) host after the cut, time from power-on: %s", ph)
		lab.checkProvisioned(t, "pxe-b", f.host.UncompressedSHA256)
		lab.checkSSH(t, f, ipBIOS, "pxe-b")
		lab.expectLog(t, `msg="boot script" mac=`+macBIOS+` host=pxe-b platform=pcbios script=local-pcbios`)
		provisionedB = !t.Failed()
	})

	t.Run("appliance state wiped: the provisioned host is adopted, its disk not written", func(t *testing.T) {
		if !provisionedB {
			t.Skip("the BIOS host was not provisioned")
		}
		before, cd := diskDigest(t, diskB)
		lab.restart(t, true)
		if h := lab.host(t, "pxe-b"); h.Phase != state.Pending {
			t.Fatalf("pxe-b is %s in the wiped state, want pending", h.Phase)
		}
		vm := New(t, Options{NetBoot: true, Firmware: BIOS, Tap: lab.tap(t), Netns: lab.ns, MAC: macBIOS,
			MemoryMiB: 1024, DataDisk: diskB, DataDiskSerial: "pxe-disk-b"})
		vm.Start()
		vm.WaitSerial("cairn-agent: netboot provision on "+macBIOS, 6*time.Minute)
		vm.WaitSerial("adopting it, writing nothing but the host token", 3*time.Minute)
		vm.WaitSerial("adopted, not written", time.Minute)
		vm.Stop() // before Debian boots and writes its own logs
		t.Logf("adopted %s after power-on", vm.Uptime().Round(time.Second/10))
		after, cdAfter := diskDigest(t, diskB)
		if after != before || cdAfter != cd {
			t.Errorf("the adopted disk changed: sha256 %s before the configdrive (was %s), configdrive at %d (was %d)", after, before, cdAfter, cd)
		}
		h := lab.host(t, "pxe-b")
		if h.Phase != state.Provisioned || len(h.Events) == 0 || h.Events[len(h.Events)-1].Kind != "host.adopted" {
			t.Errorf("pxe-b after adoption: %s, events %+v", h.Phase, h.Events)
		}
	})
	t.Logf("TestPXE took %s", time.Since(began).Round(time.Second))
}

// phases are the times from power-on at which a provisioned machine passed each step.
type phases struct {
	names []string
	at    []time.Duration
}

func (p *phases) mark(name string, vm *VM) {
	p.names = append(p.names, name)
	p.at = append(p.at, vm.Uptime())
}

func (p *phases) String() string {
	var b strings.Builder
	for i, n := range p.names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %s", n, p.at[i].Round(time.Second/10))
	}
	return b.String()
}

// provisionPhases follows a provisioning on the console, from the firmware's DHCP to the
// agent's done.
func provisionPhases(t *testing.T, vm *VM, name, mac string) *phases {
	t.Helper()
	p := &phases{}
	vm.WaitSerial("/boot/ipxe?mac="+mac, 6*time.Minute)
	p.mark("DHCP+iPXE", vm)
	vm.WaitSerial("cairn-agent: netboot provision on "+mac, 4*time.Minute)
	p.mark("kernel+initramfs", vm)
	vm.WaitSerial("from DHCP server", 2*time.Minute)
	p.mark("agent DHCP", vm)
	vm.WaitSerial("cairn-agent: host "+name+": inventory reported", 2*time.Minute)
	p.mark("inventory", vm)
	vm.WaitSerial("cairn-agent: writing "+hostOS, 2*time.Minute)
	p.mark("plan", vm)
	line := vm.WaitSerial("written and verified", 20*time.Minute)
	p.mark("write+verify", vm)
	t.Logf("%s: %s", name, line)
	vm.WaitSerial("cairn-agent: reported done to "+pxeServer, 2*time.Minute)
	p.mark("configdrive+done", vm)
	return p
}

// osUp waits for the host's own Debian: the login prompt with the name cloud-init gave it.
func (p *phases) osUp(t *testing.T, vm *VM, name string) {
	t.Helper()
	vm.WaitSerial("booting from its local disk", 4*time.Minute)
	p.mark("reboot to disk", vm)
	vm.WaitSerial(name+" login:", 10*time.Minute)
	p.mark("OS up", vm)
}

// checkProvisioned checks the host's record: provisioned with the image's digest.
func (l *pxeLab) checkProvisioned(t *testing.T, name, digest string) {
	t.Helper()
	h := l.host(t, name)
	if h.Phase != state.Provisioned || !strings.Contains(h.Message, digest) {
		t.Errorf("%s: %s %q; want provisioned with %s", name, h.Phase, h.Message, digest)
	}
	var kinds []string
	for _, e := range h.Events { // oldest first
		kinds = append(kinds, e.Kind)
	}
	if got := strings.Join(kinds, " "); !regexp.MustCompile(`host\.inventory.* host\.provisioning.* host\.provisioned`).MatchString(got) {
		t.Errorf("%s's events: %s; want the inventory, then provisioning, then provisioned", name, got)
	}
}

// checkSSH logs in to a provisioned host with the site's key, from inside the lab's namespace,
// and asks its name: cloud-init set it from the configdrive, with the key.
func (l *pxeLab) checkSSH(t *testing.T, f *netbootFix, ip, name string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		cmd := exec.Command("ip", "netns", "exec", l.ns, "ssh", "-i", f.sshKey, "-o", "StrictHostKeyChecking=no",
			"-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
			"debian@"+ip, "hostname; cat /run/cloud-init/result.json")
		out, err := cmd.CombinedOutput()
		if err == nil {
			got := strings.TrimSpace(string(out))
			if !strings.HasPrefix(got, name+"\n") || !strings.Contains(got, `"errors": []`) {
				t.Errorf("ssh debian@%s: %s; want the hostname %s and cloud-init without errors", ip, got, name)
			}
			t.Logf("ssh debian@%s with the site's key: %s", ip, strings.ReplaceAll(got, "\n", " "))
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("ssh debian@%s with the site's key: %v: %s", ip, err, out)
			return
		}
		time.Sleep(5 * time.Second)
	}
}

// diskDigest is the sha256 of a host's disk up to its configdrive partition, and where that
// partition starts.
func diskDigest(t *testing.T, path string) (string, int64) {
	t.Helper()
	part, ok, err := disk.ConfigDrivePart(path)
	if err != nil || !ok {
		t.Fatalf("%s has no configdrive: %v", path, err)
	}
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(fh, 0, part.Start)); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil)), part.Start
}

// netbootFix is what the PXE lab serves: a store cairn build made, the cairn binary, and the
// site's SSH key.
type netbootFix struct {
	work   string
	cairn  string
	store  string
	sshKey string // the private key; sshKey+".pub" is in the site
	host   hostimage.Info
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

// makeNetbootFixture builds the lab's store with cairn build: the agent from Debian's kernel
// package ([agent]), the example host image (built once by package examples/hostimage and
// cached), and trixie's iPXE binaries.
func makeNetbootFixture(ctx context.Context) (*netbootFix, error) {
	start := time.Now()
	work, err := os.MkdirTemp("", "cairn-vmtest-netboot-")
	if err != nil {
		return nil, err
	}
	cleanupDirs = append(cleanupDirs, work)
	f := &netbootFix{work: work, cairn: filepath.Join(work, "cairn"), store: filepath.Join(work, "store"), sshKey: filepath.Join(work, "id_ed25519")}

	// The appliance base's kernel tells whether KVM works (the probe); it is cached.
	logPath := filepath.Join(work, "build.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	base, err := appliance.Build(ctx, appliance.BuildConfig{Log: logf})
	if err != nil {
		b, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("%w; the build's last lines:\n%s", err, tail(b, 40))
	}
	SetProbeKernel(filepath.Join(base, appliance.KernelFile))
	if f.host, err = hostimage.Build(ctx, hostimage.Config{Log: logf}); err != nil {
		b, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("the host image: %w; the build's last lines:\n%s", err, tail(b, 40))
	}
	kernelDeb, err := content.Kernel(ctx)
	if err != nil {
		return nil, err
	}

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
	if out, err := exec.CommandContext(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vmtest@pxelab", "-f", f.sshKey).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ssh-keygen: %w: %s", err, out)
	}

	// build.toml: everything from local files, pinned by sha256.
	keyPEM, _, err := airgap.GenerateKey()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(work, "signing.key"), keyPEM, 0o600); err != nil {
		return nil, err
	}
	ipxe, err := content.IPXE(ctx)
	if err != nil {
		return nil, err
	}
	var bt strings.Builder
	fmt.Fprintf(&bt, "[signing]\nkey = \"signing.key\"\n\n[agent]\nkernel = { source = %q, sha256 = %q }\nbinary = %q\n\n",
		kernelDeb, content.KernelPackageSHA256, agent)
	fmt.Fprintf(&bt, "[[os_image]]\nname = %q\nsource = %q\nsha256 = %q\nformat = %q\nuncompressed_sha256 = %q\n\n",
		hostOS, f.host.Path(), f.host.SHA256, hostimage.Format, f.host.UncompressedSHA256)
	for _, b := range content.IPXEBinaries {
		p := filepath.Join(work, b.Name)
		if err := os.WriteFile(p, ipxe[b.Name], 0o644); err != nil {
			return nil, err
		}
		fmt.Fprintf(&bt, "[[netboot]]\nname = %q\ntype = \"ipxe\"\nsource = %q\nsha256 = %q\n\n", b.Name, p, b.SHA256)
	}
	if err := os.WriteFile(filepath.Join(work, "build.toml"), []byte(bt.String()), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, f.cairn, "build", "-f", filepath.Join(work, "build.toml"), "-o", f.store)
	cmd.Env = append(os.Environ(), fmt.Sprintf("SOURCE_DATE_EPOCH=%d", sourceDate))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("cairn build of the lab's store: %w\n%s", err, out)
	}
	fmt.Fprintf(os.Stderr, "vmtest: netboot store %s made by cairn build (%s):\n%s", f.store, time.Since(start).Round(time.Second), tail(out, 12))
	return f, nil
}

// pxeLab is the namespace, its bridge and taps, and the daemon running in it.
type pxeLab struct {
	ns     string
	dir    string
	cfg    string // the daemon's configuration
	state  string // its state file
	log    string // the daemon's log
	cairn  string
	taps   int
	hc     *http.Client
	client *daemonapi.Client
	stop   func() // stops the daemon
}

func newPXELab(t *testing.T, f *netbootFix) *pxeLab {
	t.Helper()
	removeStaleNetns(pxeNetns)
	l := &pxeLab{ns: fmt.Sprintf("%s%d", pxeNetns, os.Getpid()), dir: keptDir(t, "daemon"), cairn: f.cairn}
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

	pub, err := os.ReadFile(f.sshKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	siteDir := filepath.Join(l.dir, "site")
	for name, body := range pxeSite(strings.TrimSpace(string(pub))) {
		p := filepath.Join(siteDir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l.cfg, l.state = filepath.Join(l.dir, "daemon.toml"), filepath.Join(l.dir, "state", "state.db")
	if err := os.WriteFile(l.cfg, fmt.Appendf(nil, "store = %q\nsite_dir = %q\nstate = %q\ndata_dir = %q\nlisten = \":5000\"\nallow_ephemeral = true\npxe = true\n",
		f.store, siteDir, l.state, filepath.Join(l.dir, "data")), 0o644); err != nil {
		t.Fatal(err)
	}
	l.log = filepath.Join(l.dir, "daemon.log")
	l.start(t)
	t.Cleanup(func() { l.stop() })
	return l
}

// restart stops the daemon and starts it again; with wipe, its state file is removed first,
// as on an appliance restored without its data disk.
func (l *pxeLab) restart(t *testing.T, wipe bool) {
	t.Helper()
	l.stop()
	if wipe {
		if err := os.Remove(l.state); err != nil {
			t.Fatal(err)
		}
	}
	l.start(t)
}

// start starts the daemon in the namespace and waits until it serves DHCP and TFTP.
func (l *pxeLab) start(t *testing.T) {
	t.Helper()
	stdout := filepath.Join(l.dir, "daemon.out")
	outf, err := os.Create(stdout)
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.OpenFile(l.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	logStart, _ := logf.Seek(0, io.SeekEnd)
	cmd := exec.Command("ip", "netns", "exec", l.ns, l.cairn, "daemon", "--config", l.cfg) //nolint:gosec // G204: our binary and paths
	cmd.Stdout, cmd.Stderr = outf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting cairn daemon in %s: %v", l.ns, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); outf.Close(); logf.Close() }()
	var once sync.Once
	l.stop = func() {
		once.Do(func() {
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
	}
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
	l.waitLogAfter(t, logStart, 30*time.Second, "dhcp: serving")
	l.waitLogAfter(t, logStart, 30*time.Second, "tftp: serving")
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

// waitLogAfter waits for a line of the daemon's log after byte from that holds every piece
// of want.
func (l *pxeLab) waitLogAfter(t *testing.T, from int64, timeout time.Duration, want ...string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(l.log)
		b = b[min(from, int64(len(b))):]
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
