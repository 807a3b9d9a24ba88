package hostimage

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/cairn-appliance/cairn/agent/api"
)

// The boot test is opt-in, like the vmtest package's: QEMU under TCG takes minutes.
const vmTestEnv = "CAIRN_VMTEST"

// bootTimeout bounds one boot, firmware to the last line the test waits for.
const bootTimeout = 12 * time.Minute

// TestBoot boots the cached image in QEMU (TCG, one vCPU) once under SeaBIOS and once under
// OVMF, each from a copy-on-write overlay bigger than the image and with its own NoCloud seed,
// and checks that the serial console reaches "HOSTNAME login:" with the seed's hostname, that
// cloud-init grew the root to the overlay's size, and that each machine made its own ssh host
// keys.
func TestBoot(t *testing.T) {
	if os.Getenv(vmTestEnv) != "1" {
		t.Skipf("VM test: run it with %s=1 go test ./examples/hostimage -run TestBoot (after make host-image)", vmTestEnv)
	}
	info, err := Cached("")
	if errors.Is(err, ErrNotBuilt) {
		t.Skipf("no host image for this recipe in the cache: make host-image builds it (%v)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img", "mkfs.vfat", "mcopy"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed; run scripts/deps.sh", tool)
		}
	}
	dir := t.TempDir()
	logs := os.Getenv("CAIRN_VMTEST_LOGS") // where the serial consoles go; the temp directory if unset
	if logs == "" {
		logs = dir
	}
	raw := filepath.Join(dir, "disk.raw")
	start := time.Now()
	if err := decompress(info, raw); err != nil {
		t.Fatal(err)
	}
	t.Logf("decompressed %s (%d bytes, sha256 checked) in %s", info.File, info.UncompressedSize, time.Since(start).Round(100*time.Millisecond))

	const overlaySize = 3 << 30 // bigger than the image: cloud-init grows the root into the rest
	keys := map[string]string{}
	for _, fw := range []string{"seabios", "ovmf"} {
		t.Run(fw, func(t *testing.T) {
			hostname := "cairn-" + fw
			overlay := filepath.Join(dir, fw+".qcow2")
			run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", raw, "-F", "raw", overlay, strconv.Itoa(overlaySize))
			seed := makeSeed(t, filepath.Join(dir, fw+"-seed"), hostname)
			args := []string{
				"-machine", "q35", "-accel", "tcg", "-smp", "1", "-m", "1024",
				"-display", "none", "-monitor", "none", "-parallel", "none", "-serial", "stdio",
				"-drive", "if=none,id=disk,format=qcow2,file=" + overlay,
				"-device", "virtio-blk-pci,drive=disk,bootindex=0",
				"-drive", "if=none,id=seed,format=raw,readonly=on,file=" + seed,
				"-device", "virtio-blk-pci,drive=seed",
				// A NIC that reaches nothing but QEMU's own DHCP: cloud-init's fallback
				// network, rendered for systemd-networkd, gets a lease; nothing leaves.
				"-netdev", "user,id=net,restrict=on",
				"-device", "virtio-net-pci,netdev=net,romfile=",
			}
			if fw == "ovmf" {
				vars := filepath.Join(dir, "OVMF_VARS.fd")
				copyFile(t, "/usr/share/OVMF/OVMF_VARS.fd", vars)
				args = append(args,
					"-drive", "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd",
					"-drive", "if=pflash,format=raw,file="+vars)
			}
			b := boot(t, filepath.Join(logs, "hostimage-"+fw+".serial"), args, hostname)
			t.Logf("%s: firmware to %q in %s; cloud-init done at %s", fw, hostname+" login:", b.login.Round(time.Second), b.done.Round(time.Second))
			if b.rootSize < overlaySize*9/10 {
				t.Errorf("%s: the root file system is %d bytes, want it grown to nearly the disk's %d", fw, b.rootSize, overlaySize)
			}
			if !b.leased {
				t.Errorf("%s: the console shows no interface with QEMU's DHCP address %s: cloud-init's network for systemd-networkd did not come up", fw, guestAddr)
			}
			keys[fw] = b.hostKey
		})
	}
	if keys["seabios"] != "" && keys["seabios"] == keys["ovmf"] {
		t.Errorf("both machines have the ssh host key %q: host keys must be made per machine, not carried in the image", keys["seabios"])
	}
}

// booted is what one boot showed on its serial console.
type booted struct {
	login, done time.Duration // from QEMU's start to the login prompt, and to cloud-init's end
	rootSize    int64         // the root file system's size, as the seed's runcmd printed it
	hostKey     string        // the ed25519 host key cloud-init printed
	leased      bool          // cloud-init listed an interface with QEMU's DHCP address
}

// guestAddr is the address QEMU's user network leases to the guest.
const guestAddr = "10.0.2.15"

var (
	rootSizeLine = regexp.MustCompile(`CAIRN-ROOT-SIZE (\d+)\r?\n`)
	hostKeyLine  = regexp.MustCompile(`(?s)-----BEGIN SSH HOST KEY KEYS-----.*?ssh-ed25519 (\S+)`)
	doneLine     = regexp.MustCompile(`Cloud-init v\. \S+ finished at`)
	leaseLine    = regexp.MustCompile(`ci-info: \| +\S+ +\| True \| +` + regexp.QuoteMeta(guestAddr) + ` +\|`) // cloud-init's "Net device info"
)

// boot runs QEMU with args until its serial console has shown the login prompt for hostname,
// cloud-init's end and the root's size, and writes the console to logPath.
func boot(t *testing.T, logPath string, args []string, hostname string) booted {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting QEMU: %v", err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()

	var b booted
	var seen bytes.Buffer // the console so far, for the prompt, which ends in no newline
	prompt := []byte(hostname + " login:")
	r := bufio.NewReader(io.TeeReader(out, logf))
	chunk := make([]byte, 4096)
	for b.login == 0 || b.done == 0 || b.rootSize == 0 {
		n, err := r.Read(chunk)
		seen.Write(chunk[:n])
		if b.login == 0 && bytes.Contains(seen.Bytes(), prompt) {
			b.login = time.Since(start)
		}
		if b.done == 0 && doneLine.Match(seen.Bytes()) {
			b.done = time.Since(start)
		}
		if m := rootSizeLine.FindSubmatch(seen.Bytes()); m != nil && b.rootSize == 0 {
			b.rootSize, _ = strconv.ParseInt(string(m[1]), 10, 64)
		}
		if !b.leased && leaseLine.Match(seen.Bytes()) {
			b.leased = true
		}
		if m := hostKeyLine.FindSubmatch(seen.Bytes()); m != nil && b.hostKey == "" {
			b.hostKey = string(m[1])
		}
		if err != nil {
			tail := seen.Bytes()[max(0, seen.Len()-3000):]
			t.Fatalf("the console ended (%v) before the login prompt %q, cloud-init's end and the root size all showed (login %v, done %v, root %d); QEMU said %q; the console (all of it in %s) ended with:\n%s",
				err, prompt, b.login, b.done, b.rootSize, stderr.String(), logPath, tail)
		}
	}
	return b
}

// decompress writes info's image to dst, leaving runs of zeros as holes, and checks its size
// and sha256 against info.
func decompress(info Info, dst string) error {
	in, err := os.Open(info.Path())
	if err != nil {
		return err
	}
	defer in.Close()
	dec, err := zstd.NewReader(in, zstd.WithDecoderMaxWindow(api.MaxZstdWindow))
	if err != nil {
		return err
	}
	defer dec.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		m, rerr := io.ReadFull(dec, buf)
		if m > 0 {
			h.Write(buf[:m])
			if allZero(buf[:m]) {
				_, err = out.Seek(int64(m), io.SeekCurrent)
			} else {
				_, err = out.Write(buf[:m])
			}
			if err != nil {
				return err
			}
			n += int64(m)
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return fmt.Errorf("decompressing %s: %w", info.Path(), rerr)
		}
	}
	if err := out.Truncate(n); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != info.UncompressedSize || got != info.UncompressedSHA256 {
		return fmt.Errorf("%s decompresses to %d bytes with sha256 %s; %s says %d bytes, %s: remove %s and run make host-image", info.Path(), n, got, InfoFile, info.UncompressedSize, info.UncompressedSHA256, info.Dir)
	}
	return out.Close()
}

// makeSeed writes a NoCloud seed (vfat labelled cidata) for hostname into dir and returns its
// path: meta-data with the hostname, user-data with a fresh ssh key and a runcmd that prints
// the root's size on the serial console.
func makeSeed(t *testing.T, dir, hostname string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"meta-data": "instance-id: iid-" + hostname + "\nlocal-hostname: " + hostname + "\n",
		"user-data": "#cloud-config\nssh_authorized_keys:\n  - " + authorizedKey(pub) + " test@" + hostname + "\n" +
			"runcmd:\n  - [ sh, -c, 'echo \"CAIRN-ROOT-SIZE $(df -B1 --output=size / | tail -n1 | tr -d \" \")\" > /dev/ttyS0' ]\n",
	}
	for name, s := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(dir, "seed.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 2<<20); err != nil {
		t.Fatal(err)
	}
	run(t, "mkfs.vfat", "-n", "cidata", img)
	run(t, "mcopy", "-i", img, filepath.Join(dir, "meta-data"), filepath.Join(dir, "user-data"), "::")
	return img
}

// authorizedKey returns pub in authorized_keys form, without its comment.
func authorizedKey(pub ed25519.PublicKey) string {
	var b []byte
	for _, field := range [][]byte{[]byte("ssh-ed25519"), pub} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(field))) //nolint:gosec // G115: short
		b = append(b, field...)
	}
	return "ssh-ed25519 " + base64.StdEncoding.EncodeToString(b)
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("%v; the ovmf package (scripts/deps.sh) provides it", err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
