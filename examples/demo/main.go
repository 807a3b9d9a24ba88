// Command demo runs cairn's main job end to end on this machine, with no network: it serves
// the example content (examples/content), builds examples/build.toml into a signed store and a
// bootable ISO with cairn build, boots the ISO in QEMU, waits for the appliance's daemon to be
// ready, pulls an image back from it, and says where to look. `make demo` runs it.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sirupsen/logrus"

	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/examples/content"
)

func main() {
	cairn := flag.String("cairn", "bin/cairn", "the cairn binary to build with (and to put on the appliance)")
	out := flag.String("out", "out/demo", "where the store, the ISO, the cache and the VM's logs go")
	port := flag.Int("port", 15000, "loopback port forwarded to the appliance's registry and API")
	boot := flag.Bool("boot", true, "boot the ISO in QEMU")
	flag.Parse()
	logrus.SetOutput(io.Discard) // the content registry's request log
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *cairn, *out, *port, *boot); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("\n== "+format+"\n", args...) }

func run(ctx context.Context, cairn, out string, port int, boot bool) error {
	if err := os.MkdirAll(out, 0o755); err != nil { //nolint:gosec // demo output
		return err
	}
	tmp, err := os.MkdirTemp("", "cairn-demo-content-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	cctx, stopContent := context.WithCancel(ctx)
	defer stopContent()
	step("serving the example content on %s (the site's images, built here from trixie's busybox, and a stand-in OS image)", content.Addr)
	if err := content.Serve(cctx, tmp); err != nil {
		return err
	}
	if _, err := os.Stat("examples/keys/demo.key"); errors.Is(err, os.ErrNotExist) {
		step("making the demo's signing key: cairn bundle keygen --out examples/keys/demo")
		if err := os.MkdirAll("examples/keys", 0o700); err != nil {
			return err
		}
		if err := sh(ctx, cairn, "bundle", "keygen", "--out", "examples/keys/demo"); err != nil {
			return err
		}
	}
	store, iso := filepath.Join(out, "store"), filepath.Join(out, "cairn.iso")
	_ = os.RemoveAll(store)
	step("cairn build -f examples/build.toml -o %s --iso %s", store, iso)
	fmt.Println("(the first run also builds the appliance's Debian base with mmdebstrap: a few minutes, once)")
	if err := sh(ctx, cairn, "build", "-f", "examples/build.toml", "-o", store, "--iso", iso, "--cache", filepath.Join(out, "cache")); err != nil {
		return err
	}
	step("cairn bundle verify %s --key examples/keys/demo.pub", store)
	if err := sh(ctx, cairn, "bundle", "verify", store, "--key", "examples/keys/demo.pub"); err != nil {
		return err
	}
	stopContent() // from here on, nothing reaches the content server: the appliance has it all
	if !boot {
		return nil
	}
	return bootISO(ctx, cairn, iso, out, port, store)
}

// bootISO boots the ISO in QEMU (TCG, the ISO as a CD-ROM, the registry forwarded to
// 127.0.0.1:port), waits for the daemon's ready line, and pulls an image through it.
func bootISO(ctx context.Context, cairn, iso, out string, port int, store string) error {
	serial, pidfile := filepath.Join(out, "serial.log"), filepath.Join(out, "qemu.pid")
	if b, err := os.ReadFile(pidfile); err == nil { // a VM from an earlier demo
		var pid int
		if _, err := fmt.Sscan(string(b), &pid); err == nil {
			_ = syscall.Kill(pid, syscall.SIGTERM)
			time.Sleep(time.Second)
		}
	}
	_ = os.Remove(serial)
	// The appliance keeps what it learns on a data disk; the demo's is an image file, prepared
	// once as an operator would, and kept across runs (remove it for a fresh appliance).
	disk := filepath.Join(out, "data.img")
	if _, err := os.Stat(disk); errors.Is(err, os.ErrNotExist) {
		step("cairn appliance data init %s: the appliance's data disk (4 GiB, sparse)", disk)
		if err := makeSparse(disk, 4<<30); err != nil {
			return err
		}
		if err := sh(ctx, cairn, "appliance", "data", "init", disk); err != nil {
			_ = os.Remove(disk)
			return err
		}
	} else {
		fmt.Printf("data disk %s: kept from an earlier run, with what the appliance learnt (remove it for a fresh one)\n", disk)
	}
	step("booting %s in QEMU (TCG): serial console in %s", iso, serial)
	// One vCPU: under TCG, a guest kernel patching its own code while a second vCPU runs it
	// can crash in early boot (see vmtest.Options).
	args := []string{"-machine", "q35", "-accel", "tcg", "-m", "2048", "-smp", "1",
		"-display", "none", "-monitor", "none", "-serial", "file:" + serial,
		"-drive", "if=none,id=boot,media=cdrom,readonly=on,format=raw,file=" + iso, "-device", "ide-cd,drive=boot,bootindex=0",
		"-drive", "if=none,id=data,format=raw,file=" + disk, "-device", "virtio-blk-pci,drive=data,serial=cairn-data",
		"-netdev", fmt.Sprintf("user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:5000", port), "-device", "virtio-net-pci,netdev=net0",
		"-daemonize", "-pidfile", pidfile}
	if err := sh(ctx, "qemu-system-x86_64", args...); err != nil {
		return err
	}
	start := time.Now()
	line, err := waitFor(ctx, serial, "cairn: READY", 6*time.Minute)
	if err != nil {
		return fmt.Errorf("%w; the serial console is in %s", err, serial)
	}
	fmt.Printf("ready after %s: %s\n", time.Since(start).Round(time.Second), line)

	ix, _, err := airgap.ReadIndex(store)
	if err != nil {
		return err
	}
	var want airgap.Artifact
	for _, a := range ix.Artifacts {
		if a.Kind == airgap.KindImage {
			want = a
			break
		}
	}
	ref := fmt.Sprintf("127.0.0.1:%d/%s:%s", port, want.Repository, want.Tag)
	step("pulling %s from the appliance", ref)
	r, err := name.ParseReference(ref)
	if err != nil {
		return err
	}
	desc, err := remote.Get(r, remote.WithContext(ctx))
	if err != nil {
		return err
	}
	if desc.Digest.String() != want.Digest.String() {
		return fmt.Errorf("the appliance serves %s as %s, the store says %s", ref, desc.Digest, want.Digest)
	}
	fmt.Printf("%s: %s, as bundle.json says\n", ref, desc.Digest)

	step("the appliance is running")
	fmt.Printf(`  registry      http://127.0.0.1:%[1]d/v2/  (e.g. skopeo inspect --tls-verify=false docker://%[2]s)
  serial log    %[3]s
  data disk     %[7]s (its state, its site; kept across runs)
  store, ISO    %[4]s, %[5]s (dd the ISO to a USB stick, or burn it, to boot real hardware)
  stop the VM   kill $(cat %[6]s)
`, port, ref, serial, store, iso, filepath.Join(out, "qemu.pid"), disk)
	return nil
}

// waitFor polls a log file for a line containing marker.
func waitFor(ctx context.Context, path, marker string, limit time.Duration) (string, error) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if f, err := os.Open(path); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if strings.Contains(sc.Text(), marker) {
					_ = f.Close()
					return strings.TrimSpace(sc.Text()), nil
				}
			}
			_ = f.Close()
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(2 * time.Second):
			fmt.Print(".")
		}
	}
	return "", fmt.Errorf("no %q on the serial console within %s", marker, limit)
}

func sh(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...) //nolint:gosec // the demo runs cairn and QEMU, by design
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

// makeSparse creates a file of size bytes that takes no space until written.
func makeSparse(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
