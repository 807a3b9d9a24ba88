package build

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"

	"github.com/cairn-appliance/cairn/agent/initramfs"
	"github.com/cairn-appliance/cairn/agent/initramfs/initramfstest"
	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/build/buildtest"
	"github.com/cairn-appliance/cairn/site/tomlpos"
)

// agentInputs writes a test kernel package (initramfstest.Sample), a firmware package with one
// of the files its r8169 names, and a stand-in agent, and returns the [agent] table naming
// them (more is added to it).
func agentInputs(t *testing.T, more string) (table, agent string) {
	t.Helper()
	dir := t.TempDir()
	kernel := initramfstest.Sample("6.12.1-test").Write(t, dir)
	fw := filepath.Join(dir, "firmware-realtek.deb")
	initramfstest.WriteDeb(t, fw, []initramfstest.File{{Name: "usr/lib/firmware/rtl_nic/rtl8168h-2.fw", Data: []byte("rtl8168h firmware")}}, false)
	agent = filepath.Join(dir, "cairn-agent")
	if err := os.WriteFile(agent, initramfstest.Executable("the agent"), 0o755); err != nil { //nolint:gosec // a test binary
		t.Fatal(err)
	}
	return fmt.Sprintf(`
[agent]
kernel = { source = %q, sha256 = %q }
binary = %q
firmware = [{ source = %q, sha256 = %q }]
%s`, kernel, fileSum(t, kernel), agent, fw, fileSum(t, fw), more), agent
}

func fileSum(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sum(b)
}

// readInitramfs lists a gzip newc archive: name → content.
func readInitramfs(t *testing.T, p string) (map[string]string, []string) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	r := cpio.NewReader(zr)
	out := map[string]string{}
	var order []string
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out, order
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = string(b)
		order = append(order, h.Name)
	}
}

func payload(t *testing.T, idx *airgap.Index, store string, kind airgap.Kind, name string) (airgap.Artifact, []byte, string) {
	t.Helper()
	a, ok := idx.Find(kind, name)
	if !ok {
		t.Fatalf("the store has no %s %s", kind, name)
	}
	p, err := airgap.ReadPayload(a, store)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p.Path)
	if err != nil {
		t.Fatal(err)
	}
	return a, b, p.Path
}

// TestBuildAgent: [agent] gives the store the kernel, the initramfs (agent as /init, the
// default modules the test kernel has, in load order, and the firmware one package holds) and
// the agent, and says what it skipped and lacks.
func TestBuildAgent(t *testing.T) {
	table, agent := agentInputs(t, "")
	cfg := buildtest.Build(t, table)
	out, cache := filepath.Join(t.TempDir(), "store"), t.TempDir()
	o := Options{Config: cfg, Output: out, CacheDir: cache, Created: time.Unix(1700000000, 0)}
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if _, b, _ := payload(t, res.Index, out, airgap.KindNetboot, initramfs.KernelArtifact); string(b) != initramfstest.Vmlinuz {
		t.Errorf("netboot vmlinuz holds %q", b)
	}
	if _, b, _ := payload(t, res.Index, out, airgap.KindFile, initramfs.AgentArtifact); !bytes.Equal(b, initramfstest.Executable("the agent")) {
		t.Errorf("files/cairn-agent is not the agent")
	}
	a, _, initrd := payload(t, res.Index, out, airgap.KindNetboot, initramfs.InitramfsArtifact)
	if a.Repository != "netboot/"+initramfs.InitramfsArtifact {
		t.Errorf("initramfs carried as %s", a.Repository)
	}
	files, order := readInitramfs(t, initrd)
	agentBytes, _ := os.ReadFile(agent)
	if files[initramfs.Init] != string(agentBytes) {
		t.Error("/init is not the agent")
	}
	// The default modules the sample kernel has: virtio_net, e1000, virtio_blk, virtio_scsi,
	// sd_mod, nvme, then of the server list ice and r8169 (with realtek, a soft dependency).
	wantList := []string{
		"kernel/net/core/failover.ko.xz", "kernel/drivers/net/net_failover.ko.xz", "kernel/drivers/net/virtio_net.ko.xz",
		"kernel/drivers/net/ethernet/intel/e1000/e1000.ko", "kernel/drivers/block/virtio_blk.ko.zst",
		"kernel/drivers/scsi/scsi_common.ko.xz", "kernel/drivers/scsi/scsi_mod.ko.xz", "kernel/drivers/scsi/virtio_scsi.ko.xz",
		"kernel/drivers/scsi/sd_mod.ko.xz", "kernel/drivers/nvme/host/nvme-core.ko.xz", "kernel/drivers/nvme/host/nvme.ko.xz",
		"kernel/drivers/net/ethernet/intel/ice/ice.ko.xz",
		"kernel/drivers/net/phy/libphy.ko.xz", "kernel/drivers/net/phy/realtek.ko.xz", "kernel/drivers/net/ethernet/realtek/r8169.ko.xz",
	}
	var list string
	for _, m := range wantList {
		list += "6.12.1-test/" + m + "\n"
		if _, ok := files[initramfs.ModulesDir+"/6.12.1-test/"+m]; !ok {
			t.Errorf("the initramfs lacks %s", m)
		}
	}
	if files[initramfs.LoadList] != list {
		t.Errorf("load list:\n%s\nwant\n%s", files[initramfs.LoadList], list)
	}
	if files[initramfs.FirmwareDir+"/rtl_nic/rtl8168h-2.fw"] != "rtl8168h firmware" {
		t.Errorf("the firmware is not carried; entries %q", order)
	}
	rep := res.Agent
	if rep == nil || rep.KernelVersion != "6.12.1-test" || len(rep.Modules) != len(wantList) || rep.InitramfsSize != int64(len(mustRead(t, initrd))) {
		t.Fatalf("report %+v", rep)
	}
	if strings.Join(rep.MissingFirmware, " ") != "intel/ice/ddp/ice.pkg rtl_nic/rtl8125b-2.fw" || strings.Join(rep.Firmware, " ") != "rtl_nic/rtl8168h-2.fw" {
		t.Errorf("firmware carried %q, missing %q", rep.Firmware, rep.MissingFirmware)
	}
	notes := strings.Join(rep.Notes(), "\n")
	for _, w := range []string{"has no module e1000e, ahci, virtio_rng, igb", "2 firmware file(s)", "intel/ice/ddp/ice.pkg, rtl_nic/rtl8125b-2.fw"} {
		if !strings.Contains(notes, w) {
			t.Errorf("notes lack %q:\n%s", w, notes)
		}
	}
	// The packages are pinned like every source, and the kernel is unpacked in the cache.
	lock, err := ReadLock(filepath.Join(filepath.Dir(cfg), "build.lock"))
	if err != nil {
		t.Fatal(err)
	}
	if lock.source(kindAgent, "kernel") == nil || lock.source(kindAgent, "firmware[0]") == nil || lock.source(kindAgent, "kernel").Size <= 0 {
		t.Errorf("build.lock pins %+v", lock.Sources)
	}
	if _, err := initramfs.OpenKernel((&Cache{Dir: cache}).kernelDir(lock.source(kindAgent, "kernel").SHA256)); err != nil {
		t.Errorf("the cache does not keep the kernel unpacked: %v", err)
	}

	// Reproducible: another build, cold cache, --locked, same bytes.
	again := filepath.Join(t.TempDir(), "store")
	o2 := o
	o2.Output, o2.CacheDir, o2.Locked = again, t.TempDir(), true
	if _, err := Run(context.Background(), o2); err != nil {
		t.Fatal(err)
	}
	if a, b := treeSums(t, out), treeSums(t, again); !mapsEqual(a, b) {
		t.Error("two builds of the same build.toml with [agent] differ")
	}

	// The plan lists the packages as inputs and the agent's artifacts.
	var plan bytes.Buffer
	o3 := o
	o3.PlanOnly, o3.Stdout, o3.Output = true, &plan, filepath.Join(t.TempDir(), "never")
	if _, err := Run(context.Background(), o3); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"agent (input)", "agent.kernel", "agent.firmware[0]", "cairn-agent.initramfs", "2 input(s) to make artifacts from", "1 of unknown size"} {
		if !strings.Contains(plan.String(), w) {
			t.Errorf("the plan lacks %q:\n%s", w, plan.String())
		}
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestBuildAgentModules: build.toml's own module list replaces the default one, and a module
// the kernel lacks is an error at its place.
func TestBuildAgentModules(t *testing.T) {
	table, _ := agentInputs(t, `modules = ["virtio-net", "virtio_pci"]`)
	cfg := buildtest.Build(t, table)
	res, err := Run(context.Background(), Options{Config: cfg, Output: filepath.Join(t.TempDir(), "s"), CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Agent.Modules) != 3 || strings.Join(res.Agent.BuiltinModules, " ") != "virtio_pci" || len(res.Agent.SkippedModules) != 0 {
		t.Errorf("report %+v", res.Agent)
	}

	table, _ = agentInputs(t, `modules = ["virtio_net", "no_such_driver", "mlx5_core"]`)
	cfg = buildtest.Build(t, table)
	parent := t.TempDir()
	_, err = Run(context.Background(), Options{Config: cfg, Output: filepath.Join(parent, "s"), CacheDir: t.TempDir()})
	var errs tomlpos.Errors
	if !errors.As(err, &errs) || len(errs) != 2 {
		t.Fatalf("Run with modules the kernel lacks = %v, want two positioned errors", err)
	}
	line := strings.Count(string(mustRead(t, cfg))[:strings.Index(string(mustRead(t, cfg)), "modules = ")], "\n") + 1
	for _, w := range []string{
		fmt.Sprintf("%s:%d:26: agent.modules[1]: kernel 6.12.1-test (agent.kernel) has no module no_such_driver", cfg, line),
		fmt.Sprintf("%s:%d:44: agent.modules[2]: kernel 6.12.1-test (agent.kernel) has no module mlx5_core", cfg, line),
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("errors lack %q:\n%v", w, err)
		}
	}
	if got := leftovers(t, parent, ""); len(got) != 0 {
		t.Errorf("a failed build left %v", got)
	}
}

// TestAgentBinary: without agent.binary the agent beside cairn is taken, and its absence
// names the key and make build; what cannot be /init is refused.
func TestAgentBinary(t *testing.T) {
	table, agent := agentInputs(t, "")
	table = strings.Replace(table, fmt.Sprintf("binary = %q\n", agent), "", 1)
	cfg := buildtest.Build(t, table)
	bin := t.TempDir()
	o := Options{Config: cfg, Output: filepath.Join(t.TempDir(), "s"), CacheDir: t.TempDir(), CairnBinary: filepath.Join(bin, "cairn"), PlanOnly: true}
	_, err := Run(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "agent.binary is not set") || !strings.Contains(err.Error(), "make build") || !strings.Contains(err.Error(), filepath.Join(bin, "cairn-agent")) {
		t.Errorf("Run without an agent = %v, want an error naming agent.binary, make build and where it looked", err)
	}
	if err := os.WriteFile(filepath.Join(bin, "cairn-agent"), mustRead(t, agent), 0o755); err != nil { //nolint:gosec // a test binary
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), o); err != nil {
		t.Errorf("Run with cairn-agent beside cairn = %v", err)
	}
	if dyn, err := filepath.EvalSymlinks("/bin/sh"); err == nil { // dynamically linked on Debian
		if err := checkAgentBinary(dyn); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
			t.Errorf("checkAgentBinary(%s) = %v, want it refused as dynamically linked", dyn, err)
		}
	}
	if err := checkAgentBinary(cfg); err == nil || !strings.Contains(err.Error(), "ELF") {
		t.Errorf("checkAgentBinary of a text file = %v", err)
	}
}

func TestAgentConfigErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "build.toml")
	src := `[signing]
key = "k"

[[netboot]]
name = "vmlinuz"
type = "kernel"
source = "x"
sha256 = "` + strings.Repeat("a", 64) + `"

[[file]]
name = "cairn-agent"
source = "y"
sha256 = "` + strings.Repeat("a", 64) + `"

[agent]
kernel = { source = "k.deb" }
binary = "no-such-agent"
modules = ["Virtio.Net", "nvme", "nvme", ""]
firmware = [{ source = "f.deb", sha256 = "nope" }]
`
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(p)
	var errs tomlpos.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("LoadConfig() = %v, want positioned errors", err)
	}
	want := []string{
		":5:8: netboot[0].name: netboot \"vmlinuz\" is the name of what [agent] makes",
		":11:8: file[0].name: file \"cairn-agent\" is the name of the agent binary",
		":16:1: agent.kernel.sha256: missing required key in [agent.kernel]; SHA-256 of the .deb.",
		":17:10: agent.binary: no agent binary at " + filepath.Join(dir, "no-such-agent") + "; build it with make build",
		":18:12: agent.modules[0]: expected a module name of lowercase letters",
		":18:34: agent.modules[2]: module nvme is listed twice",
		":18:42: agent.modules[3]: must not be empty",
		":19:42: agent.firmware[0].sha256: expected 64 lowercase hexadecimal digits",
	}
	got := err.Error()
	for _, w := range want {
		if !strings.Contains(got, p+w) {
			t.Errorf("errors lack %q:\n%s", w, got)
		}
	}
	if len(errs) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(errs), len(want), got)
	}
	if !slices.ContainsFunc(errs, func(e *tomlpos.Error) bool { return e.Key == "agent.kernel.sha256" }) {
		t.Errorf("the missing sha256 is not reported at agent.kernel.sha256: %s", got)
	}
}
