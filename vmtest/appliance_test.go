package vmtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/sirupsen/logrus"

	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/appliance"
	"github.com/cairn-appliance/cairn/build"
	"github.com/cairn-appliance/cairn/daemon"
	"github.com/cairn-appliance/cairn/examples/content"
)

// readyTimeout is how long the appliance may take from power-on to cairn.service READY.
const readyTimeout = 180 * time.Second

const (
	imageName   = "examples.cairn.internal/httpd:1.37.0" // as examples/build.toml carries it
	osImageName = "debian-12"
	volumeLabel = "CAIRN_VMTEST" // not the default, so the label reaches the daemon through the boot menu
	sourceDate  = 1767225600     // 2026-01-01
)

// fixture is what every appliance scenario shares: the base, a store and the ISO mastered from them.
type fixture struct {
	work     string
	base     string
	bin      string // the static cairn the ISO carries
	key      []byte // the signing key (PEM), the same for every build of the fixture
	store    string
	iso      string
	image    v1.Hash // the container image's manifest digest
	osImage  string  // the OS image artifact's manifest digest
	osSHA256 string  // the OS image file's sha256
}

var (
	fixOnce sync.Once
	fix     *fixture
	fixErr  error
	fixDir  string
	// cleanupDirs are the other fixtures' work directories, removed at the end.
	cleanupDirs []string
)

func TestMain(m *testing.M) {
	logrus.SetOutput(io.Discard) // the example content registry's request log
	code := m.Run()
	for _, d := range append(cleanupDirs, fixDir) {
		if d != "" {
			os.RemoveAll(d)
		}
	}
	os.Exit(code)
}

// applianceISO builds (once per test binary) the appliance base if it is not cached, the cairn
// binary, a store with a random container image and an OS image, and an ISO of them.
func applianceISO(t *testing.T) *fixture {
	t.Helper()
	SkipUnlessEnabled(t)
	fixOnce.Do(func() { fix, fixErr = makeFixture() })
	if fixErr != nil {
		t.Fatal(fixErr)
	}
	return fix
}

func makeFixture() (*fixture, error) {
	ctx := context.Background()
	work, err := os.MkdirTemp("", "cairn-vmtest-fixture-")
	if err != nil {
		return nil, err
	}
	fixDir = work
	f := &fixture{work: work}

	start := time.Now()
	logPath := filepath.Join(work, "appliance-base.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	f.base, err = appliance.Build(ctx, appliance.BuildConfig{Log: logf}) // $CAIRN_APPLIANCE_CACHE or ~/.cache
	logf.Close()
	if err != nil {
		b, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("%w; the build's last lines:\n%s", err, tail(b, 40))
	}
	fmt.Fprintf(os.Stderr, "vmtest: appliance base %s (%s)\n", f.base, time.Since(start).Round(time.Second))
	SetProbeKernel(filepath.Join(f.base, appliance.KernelFile))

	// The cairn binary, in a layer of its own, and beside it the static cairn-agent, which the
	// example build's [agent] carries.
	bin := filepath.Join(work, "cairn")
	for _, pkg := range []string{"cmd/cairn", "cmd/cairn-agent"} {
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(work, filepath.Base(pkg)), "github.com/cairn-appliance/cairn/"+pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building %s for the appliance: %w\n%s", filepath.Base(pkg), err, out)
		}
	}
	f.bin = bin
	if f.key, _, err = airgap.GenerateKey(); err != nil {
		return nil, err
	}

	// The example build: examples/build.toml, pinned by examples/build.lock, from the example
	// content served on loopback, through cairn build as operators run it.
	f.store, f.iso = filepath.Join(work, "store"), filepath.Join(work, "cairn.iso")
	if err := exampleBuild(ctx, f, f.store, f.iso); err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "vmtest: built and mastered the example ISO %s (%s)\n", f.iso, time.Since(start).Round(time.Second))
	return f, nil
}

// exampleBuild runs cairn build on a copy of examples/build.toml (signed with the fixture's
// key, its paths made absolute) with --locked, writing the store and the ISO.
func exampleBuild(ctx context.Context, f *fixture, store, isoPath string) error {
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	if err := content.Serve(cctx, filepath.Join(f.work, "content")); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(f.work, "project-")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bundle.key"), f.key, 0o600); err != nil {
		return err
	}
	src, err := os.ReadFile("../examples/build.toml")
	if err != nil {
		return err
	}
	site, err := filepath.Abs("../examples/site")
	if err != nil {
		return err
	}
	toml := strings.Replace(string(src), `key = "keys/demo.key"`, `key = "bundle.key"`, 1)
	toml = strings.Replace(toml, `seed = "site"`, fmt.Sprintf("seed = %q", site), 1)
	lock, err := os.ReadFile("../examples/build.lock")
	if err != nil {
		return err
	}
	for name, b := range map[string][]byte{"build.toml": []byte(toml), "build.lock": lock} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	res, err := build.Run(ctx, build.Options{
		Config: filepath.Join(dir, "build.toml"), Output: store, CacheDir: filepath.Join(dir, "cache"),
		Locked: true, Created: time.Unix(sourceDate, 0),
		ISO: isoPath, VolumeLabel: volumeLabel, CairnBinary: f.bin, Log: io.Discard,
	})
	if err != nil {
		return fmt.Errorf("cairn build of examples/build.toml: %w", err)
	}
	for _, a := range res.Index.Artifacts {
		switch {
		case a.Kind == airgap.KindOS:
			f.osImage = a.Digest.String()
		case a.Repository+":"+a.Tag == imageName:
			if f.image, err = v1.NewHash(a.Digest.String()); err != nil {
				return err
			}
		}
	}
	f.osSHA256 = content.OSImageSHA256
	if f.image == (v1.Hash{}) || f.osImage == "" {
		return fmt.Errorf("the example store lacks %s or an OS image", imageName)
	}
	return nil
}

// bootAndPull boots the ISO with a data disk prepared beforehand, as an operator may prepare
// one on another machine, waits for cairn.service to be ready and pulls both artifacts.
func bootAndPull(t *testing.T, fw Firmware, media Media) {
	f := applianceISO(t)
	disk := DataDiskImage(t, 256<<20)
	if out, err := exec.Command(f.bin, "appliance", "data", "init", disk).CombinedOutput(); err != nil {
		t.Fatalf("cairn appliance data init %s: %v\n%s", disk, err, out)
	}
	vm := New(t, Options{ISO: f.iso, Firmware: fw, Media: media, Forward: []int{5000}, DataDisk: disk})
	vm.Start()
	line := vm.WaitSerial(daemon.ReadyPrefix, readyTimeout)
	t.Logf("%s from a %s: cairn.service ready %s after power-on", fw, media, vm.Uptime().Round(time.Second))
	// Two images, the OS image, three iPXE binaries, the agent's vmlinuz, initramfs and binary.
	if !strings.Contains(line, "artifacts=9") || !strings.Contains(line, "/cairn/store") {
		t.Errorf("ready line %q: want it to serve the 9 artifacts of the medium's /cairn/store", line)
	}
	addr := vm.Addr(5000)

	ref, err := name.ParseReference(addr+"/"+imageName, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	var img v1.Image
	// The daemon listens before DHCP has necessarily finished; give the network a moment.
	deadline := time.Now().Add(60 * time.Second)
	for {
		img, err = remote.Image(ref)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil {
		t.Fatalf("pulling %s from the appliance: %v", ref, err)
	}
	if d, _ := img.Digest(); d != f.image {
		t.Errorf("image digest through the appliance = %s, want %s", d, f.image)
	}
	if err := validate.Image(img); err != nil {
		t.Errorf("the image pulled from the appliance does not check out: %v", err)
	}

	osRef, err := name.ParseReference(addr+"/os/"+osImageName+":latest", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	art, err := remote.Image(osRef)
	if err != nil {
		t.Fatalf("pulling %s from the appliance: %v", osRef, err)
	}
	if d, _ := art.Digest(); d.String() != f.osImage {
		t.Errorf("OS image manifest digest through the appliance = %s, want %s", d, f.osImage)
	}
	layers, err := art.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("OS image artifact layers = %d, %v, want 1", len(layers), err)
	}
	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		t.Fatalf("reading the OS image from the appliance: %v", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != f.osSHA256 {
		t.Errorf("OS image sha256 through the appliance = %s, want %s", got, f.osSHA256)
	}

	// The daemon applied the site seed the ISO carries, and says so on its API.
	resp, err := http.Get("http://" + addr + "/api/v1/status")
	if err != nil {
		t.Fatalf("the appliance's status API: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), `"site": "rack1"`) || !strings.Contains(string(body), `"hosts": 3`) {
		t.Errorf("/api/v1/status on the appliance = %s, want the example site applied", body)
	}
	if strings.Contains(string(body), `"ephemeral"`) {
		t.Errorf("/api/v1/status on the appliance with its data disk = %s, want it not ephemeral", body)
	}
}

func TestApplianceBootsSeaBIOSFromCDROM(t *testing.T) { bootAndPull(t, BIOS, CDROM) }

func TestApplianceBootsOVMFFromUSB(t *testing.T) { bootAndPull(t, UEFI, USB) }

// TestISOIsReproducible runs the example build again, into new directories with a new cache,
// and expects an ISO with the same bytes: same inputs, same SOURCE_DATE_EPOCH, same sha256.
func TestISOIsReproducible(t *testing.T) {
	f := applianceISO(t)
	want, err := os.ReadFile(f.iso + ".sha256")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	isoPath := filepath.Join(dir, "cairn.iso")
	if err := exampleBuild(context.Background(), f, filepath.Join(dir, "store"), isoPath); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(isoPath + ".sha256")
	if err != nil {
		t.Fatal(err)
	}
	if g, w := strings.Fields(string(got))[0], strings.Fields(string(want))[0]; g != w {
		t.Errorf("a second build of the same inputs: ISO sha256 %s, want %s", g, w)
	}
}
