package boot

import (
	"context"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/daemon/token"
)

// TestScriptsInIPXE runs the scripts in a real iPXE: QEMU's own (its NIC's option ROM, under
// SeaBIOS), booting from the boot file URL the DHCP service hands out, for a machine the site
// does not name and whose agent kernel the store lacks. iPXE must fill in ${platform}, fetch
// the script, try the kernel exactly Tries times RetryDelay apart, then give up and reboot
// (which -no-reboot turns into QEMU exiting). It takes a few seconds under TCG; -short skips it.
func TestScriptsInIPXE(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU; run without -short")
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 is not installed; scripts/deps.sh installs it")
	}
	st := state.NewMemory(0)
	// An empty store: every netboot fetch gets 404.
	empty := t.TempDir()
	h, err := New(Config{Store: st, Tokens: &token.Issuer{Store: st}, Content: airgap.NewStores(empty),
		Tries: 2, RetryDelay: time.Second, RebootDelay: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	requests := make(chan string, 100)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case requests <- r.URL.RequestURI():
		default:
		}
		h.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	// QEMU's slirp answers DHCP; 10.0.2.2 is this host. The boot file is what the DHCP
	// service hands iPXE: iPXE fills in ${platform}.
	boot := "http://10.0.2.2:" + strconv.Itoa(port) + "/boot/ipxe?mac=52:54:00:12:34:56&platform=${platform}"
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-machine", "pc", "-m", "256", "-display", "none", "-vga", "none",
		"-serial", "none", "-boot", "n", "-no-reboot",
		"-netdev", "user,id=n0,bootfile="+boot, "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56")
	out, err := cmd.CombinedOutput()
	if err != nil || ctx.Err() != nil {
		t.Fatalf("QEMU did not reboot by itself (the script's last failure must reboot): %v %s", err, out)
	}
	close(requests)
	var got []string
	for r := range requests {
		got = append(got, r)
	}
	want := []string{"/boot/ipxe?mac=52%3A54%3A00%3A12%3A34%3A56&platform=pcbios", "/boot/netboot/vmlinuz", "/boot/netboot/vmlinuz"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("iPXE asked for %q, want %q", got, want)
	}
}
