package vmtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"
)

// probeTimeout bounds the KVM probe: under a working KVM the probe kernel reaches its panic in a
// second or two, and a nested KVM that hangs must not cost more than this.
const probeTimeout = 8 * time.Second

var (
	accelOnce   sync.Once
	accel       string
	accelWhy    string
	probeKernel string
)

// SetProbeKernel names the Linux kernel the KVM probe boots. Without one the probe uses the
// host's newest /boot/vmlinuz-*, and without that the VMs use TCG.
func SetProbeKernel(path string) { probeKernel = path }

// Accel returns the QEMU accelerator the VMs use: "kvm" when /dev/kvm opens and a Linux kernel
// boots under KVM to its first panic (no root filesystem) within probeTimeout, else "tcg". A
// trivial guest is not proof: a nested KVM can run a boot sector and still fail on a real
// kernel. CAIRN_VMTEST_ACCEL=tcg or kvm skips the probe. The probe runs once per test binary.
func Accel(t testing.TB) string {
	accelOnce.Do(func() {
		switch v := os.Getenv("CAIRN_VMTEST_ACCEL"); v {
		case "tcg", "kvm":
			accel, accelWhy = v, "CAIRN_VMTEST_ACCEL="+v
			return
		case "":
		default:
			accel, accelWhy = "tcg", fmt.Sprintf("CAIRN_VMTEST_ACCEL=%q is neither tcg nor kvm", v)
			return
		}
		start := time.Now()
		if err := probe(context.Background(), "kvm", probeTimeout); err != nil {
			accel, accelWhy = "tcg", fmt.Sprintf("KVM probe failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
			return
		}
		accel, accelWhy = "kvm", fmt.Sprintf("a kernel booted under KVM in %s", time.Since(start).Round(time.Millisecond))
	})
	t.Logf("vmtest: accelerator %s (%s)", accel, accelWhy)
	return accel
}

func findProbeKernel() string {
	if probeKernel != "" {
		return probeKernel
	}
	ks, _ := filepath.Glob("/boot/vmlinuz-*")
	sort.Strings(ks)
	for i := len(ks) - 1; i >= 0; i-- {
		if f, err := os.Open(ks[i]); err == nil {
			_ = f.Close()
			return ks[i]
		}
	}
	return ""
}

// probe boots a kernel with no root filesystem under accelerator acc: it must panic ("VFS:
// Unable to mount root fs") and, with panic=-1 and -no-reboot, make QEMU exit.
func probe(ctx context.Context, acc string, timeout time.Duration) error {
	if acc == "kvm" {
		f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("/dev/kvm: %w", err)
		}
		_ = f.Close()
	}
	kernel := findProbeKernel()
	if kernel == "" {
		return fmt.Errorf("no kernel to probe with (SetProbeKernel, or a readable /boot/vmlinuz-*)")
	}
	dir, err := os.MkdirTemp("", "cairn-accel-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	serial := filepath.Join(dir, "serial.log")
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemuBin, "-machine", "pc", //nolint:gosec // G204: QEMU with arguments we built
		"-accel", acc, "-m", "256",
		"-display", "none", "-monitor", "none", "-nodefaults", "-no-reboot",
		"-serial", "file:"+serial, "-kernel", kernel, "-append", "console=ttyS0 panic=-1 loglevel=1")
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return fmt.Errorf("the probe kernel did not reach its panic within %s", timeout)
	}
	if err != nil {
		return fmt.Errorf("QEMU: %w: %s", err, bytes.TrimSpace(out))
	}
	log, _ := os.ReadFile(serial)
	if !bytes.Contains(log, []byte("Kernel panic")) {
		return fmt.Errorf("QEMU exited without the kernel's panic on the serial console")
	}
	return nil
}
