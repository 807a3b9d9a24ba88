package content

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/ulikunitz/xz"

	"github.com/cairn-appliance/cairn/build"
)

// TestOSImageDigest keeps OSImageSHA256 (which examples/build.toml pins) equal to what OSImage
// makes, and OSImage deterministic.
func TestOSImageDigest(t *testing.T) {
	a, err := OSImage()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := OSImage()
	if got := SHA256(a); got != OSImageSHA256 || SHA256(b) != got {
		t.Errorf("OSImage() sha256 = %s (then %s), want %s; update OSImageSHA256 and examples/build.toml", got, SHA256(b), OSImageSHA256)
	}
}

// TestServe serves the content as the demo and the VM tier do, and pulls every image back.
func TestServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := Serve(ctx, t.TempDir()); err != nil {
		if strings.Contains(err.Error(), "taken") {
			t.Skip(err) // the demo or the VM tier serves it right now
		}
		t.Fatal(err)
	}
	for _, c := range Images {
		want := testImage(t, c)
		r, err := name.ParseReference(Addr+"/"+c.Repo, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		got, err := remote.Image(r, remote.WithContext(ctx))
		if err != nil {
			t.Fatalf("pulling %s: %v", r, err)
		}
		if gd, _ := got.Digest(); gd != mustDigest(t, want) {
			t.Errorf("%s served with digest %s, want %s", c.Repo, gd, mustDigest(t, want))
		}
	}
	for _, b := range IPXEBinaries {
		resp, err := http.Get("http://" + Addr + IPXEPath + b.Name)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || SHA256(body) != b.SHA256 {
			t.Errorf("GET %s%s: %s, %d bytes of sha256 %s, %v; want %s", IPXEPath, b.Name, resp.Status, len(body), SHA256(body), err, b.SHA256)
		}
	}

	// The kernel package, whole and in part, as cairn build resumes a download.
	resp, err := http.Get("http://" + Addr + DebianPath + path.Base(KernelPackage))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || n != KernelPackageSize || hex.EncodeToString(h.Sum(nil)) != KernelPackageSHA256 {
		t.Errorf("GET %s%s: %s, %d bytes of sha256 %x, %v", DebianPath, path.Base(KernelPackage), resp.Status, n, h.Sum(nil), err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+Addr+DebianPath+path.Base(KernelPackage), nil)
	req.Header.Set("Range", "bytes=0-7")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	head, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || string(head) != "!<arch>\n" {
		t.Errorf("a Range GET of the kernel package: %s, %q", resp.Status, head)
	}
	if resp, err := http.Get("http://" + Addr + DebianPath + "other.deb"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET of a package not served: %v, %v", resp, err)
	} else {
		resp.Body.Close()
	}
}

// TestKernelPackage keeps the kernel's pins in step: examples/build.toml's [agent] takes
// trixie's kernel package from Serve with the sha256 KernelPackageSHA256, and the package (in
// the cache, or fetched) is that kernel's.
func TestKernelPackage(t *testing.T) {
	if testing.Short() {
		t.Skip("fetches trixie's kernel package (108 MB) from the Debian mirror unless it is cached")
	}
	p, err := Kernel(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got, n, err := fileSHA256(p); err != nil || got != KernelPackageSHA256 || n != KernelPackageSize {
		t.Errorf("%s: sha256 %s, %d bytes, %v", p, got, n, err)
	}
	if !strings.Contains(path.Base(KernelPackage), "linux-image-"+KernelVersion+"_") {
		t.Errorf("KernelPackage %s is not of kernel %s", KernelPackage, KernelVersion)
	}
	cfg, err := build.LoadConfig("../build.toml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Agent == nil {
		t.Fatal("examples/build.toml has no [agent]")
	}
	want := "http://" + Addr + DebianPath + path.Base(KernelPackage)
	if k := cfg.Agent.Kernel; k.Source != want || k.SHA256 != KernelPackageSHA256 {
		t.Errorf("examples/build.toml's agent.kernel: %s, %s; want %s, %s", k.Source, k.SHA256, want, KernelPackageSHA256)
	}
	if len(cfg.Agent.Firmware) != 0 || cfg.Agent.Binary != "" {
		t.Errorf("examples/build.toml's [agent] names firmware %v or a binary %q: its hosts are VMs, and the agent is the one make build writes", cfg.Agent.Firmware, cfg.Agent.Binary)
	}
}

func mustDigest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestIPXEBinaries keeps the pins in step: trixie's ipxe package (fetched once into the cache)
// holds binaries with the sha256 of IPXEBinaries, and examples/build.toml carries each as a
// netboot artifact of type ipxe, from Serve, with the same sha256.
func TestIPXEBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("fetches trixie's ipxe package from the Debian mirror unless it is cached")
	}
	files, err := IPXE(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := build.LoadConfig("../build.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range IPXEBinaries {
		if got := SHA256(files[b.Name]); got != b.SHA256 {
			t.Errorf("%s: sha256 %s, want %s", b.Name, got, b.SHA256)
		}
		i := slices.IndexFunc(cfg.Netboot, func(n build.Netboot) bool { return n.Name == b.Name })
		if i < 0 {
			t.Errorf("examples/build.toml carries no [[netboot]] named %s", b.Name)
			continue
		}
		n := cfg.Netboot[i]
		if n.Type != "ipxe" || n.SHA256 != b.SHA256 || n.Source != "http://"+Addr+IPXEPath+b.Name {
			t.Errorf("examples/build.toml's %s: type %s, source %s, sha256 %s; want ipxe, http://%s%s%s, %s", b.Name, n.Type, n.Source, n.SHA256, Addr, IPXEPath, b.Name, b.SHA256)
		}
	}
	if len(cfg.Netboot) != len(IPXEBinaries) {
		t.Errorf("examples/build.toml has %d [[netboot]], want the %d iPXE binaries", len(cfg.Netboot), len(IPXEBinaries))
	}
}

// TestDebFiles reads files out of a .deb made here, and refuses one whose content is not
// what the pin says.
func TestDebFiles(t *testing.T) {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	add := func(h *tar.Header, body string) {
		h.Size = int64(len(body))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	add(&tar.Header{Name: "./usr/lib/ipxe/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "./usr/lib/ipxe/ipxe-amd64.efi", Typeflag: tar.TypeReg, Mode: 0o644}, "EFI binary")
	add(&tar.Header{Name: "./usr/lib/ipxe/ipxe.efi", Typeflag: tar.TypeSymlink, Linkname: "ipxe-amd64.efi"}, "")
	add(&tar.Header{Name: "./usr/lib/ipxe/undionly.kpxe", Typeflag: tar.TypeReg, Mode: 0o644}, "BIOS binary")
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var xzb bytes.Buffer
	xw, err := xz.NewWriter(&xzb)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := xw.Write(tb.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := xw.Close(); err != nil {
		t.Fatal(err)
	}
	var deb bytes.Buffer
	deb.WriteString("!<arch>\n")
	member := func(name string, body []byte) {
		fmt.Fprintf(&deb, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", name, 0, 0, 0, "100644", len(body))
		deb.Write(body)
		if len(body)%2 == 1 {
			deb.WriteByte('\n')
		}
	}
	member("debian-binary", []byte("2.0\n"))
	member("control.tar.xz", []byte("odd"))
	member("data.tar.xz", xzb.Bytes())

	want := []PackageFile{
		{"ipxe.efi", "usr/lib/ipxe/ipxe-amd64.efi", SHA256([]byte("EFI binary"))},
		{"undionly.kpxe", "usr/lib/ipxe/undionly.kpxe", SHA256([]byte("BIOS binary"))},
	}
	got, err := debFiles(deb.Bytes(), want)
	if err != nil {
		t.Fatal(err)
	}
	if string(got["ipxe.efi"]) != "EFI binary" || string(got["undionly.kpxe"]) != "BIOS binary" {
		t.Errorf("debFiles = %q", got)
	}
	for _, tc := range []struct {
		want []PackageFile
		err  string
	}{
		{[]PackageFile{{"ipxe.efi", "usr/lib/ipxe/ipxe-amd64.efi", SHA256([]byte("other"))}}, "has sha256"},
		{[]PackageFile{{"ipxe.efi", "usr/lib/ipxe/ipxe.efi", ""}}, "not a regular file"},
		{[]PackageFile{{"snponly.efi", "usr/lib/ipxe/snponly.efi", ""}}, "has no usr/lib/ipxe/snponly.efi"},
	} {
		if _, err := debFiles(deb.Bytes(), tc.want); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("debFiles(%v) = %v, want an error with %q", tc.want, err, tc.err)
		}
	}
	if _, err := debFiles([]byte("not a deb"), want); err == nil || !strings.Contains(err.Error(), "not a Debian package") {
		t.Errorf("debFiles of junk = %v", err)
	}
}
