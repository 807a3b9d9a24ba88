package content

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/cairn-appliance/cairn/build"
	"github.com/cairn-appliance/cairn/site"
)

var busyboxOnce struct {
	sync.Once
	b   []byte
	err error
}

// testBusybox is Busybox's binary, read (or fetched into the cache) once per test binary.
func testBusybox(t *testing.T) []byte {
	t.Helper()
	busyboxOnce.Do(func() { busyboxOnce.b, busyboxOnce.err = Busybox(context.Background()) })
	if busyboxOnce.err != nil {
		t.Fatal(busyboxOnce.err)
	}
	return busyboxOnce.b
}

var testImages sync.Map // Repo → v1.Image

// testImage is c's image, made once per test binary (TestImagesAreDeterministic makes its own).
func testImage(t *testing.T, c ContainerImage) v1.Image {
	t.Helper()
	if img, ok := testImages.Load(c.Repo); ok {
		return img.(v1.Image)
	}
	img, err := c.Image(testBusybox(t))
	if err != nil {
		t.Fatalf("making %s: %v", c.Repo, err)
	}
	got, _ := testImages.LoadOrStore(c.Repo, img)
	return got.(v1.Image)
}

// imageFile is one entry of an image's flattened file system.
type imageFile struct {
	hdr  *tar.Header
	data []byte
}

// imageFS flattens an image's layers into its file system, by absolute path.
func imageFS(t *testing.T, img v1.Image) map[string]imageFile {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	fs := map[string]imageFile{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		fs[path.Clean("/"+h.Name)] = imageFile{h, b}
	}
	return fs
}

// resolve follows symlinks from p to what they end at.
func resolve(fs map[string]imageFile, p string) (string, imageFile, bool) {
	for range 10 {
		f, ok := fs[p]
		if !ok || f.hdr.Typeflag != tar.TypeSymlink {
			return p, f, ok
		}
		if strings.HasPrefix(f.hdr.Linkname, "/") {
			p = path.Clean(f.hdr.Linkname)
		} else {
			p = path.Join(path.Dir(p), f.hdr.Linkname)
		}
	}
	return p, imageFile{}, false
}

// checkRunnable checks that fs holds argv[0], executable, and when it is busybox, a link of
// argv[1], the applet it runs.
func checkRunnable(t *testing.T, fs map[string]imageFile, what string, argv []string) {
	t.Helper()
	if len(argv) == 0 {
		t.Errorf("%s: no command", what)
		return
	}
	p, f, ok := resolve(fs, argv[0])
	if !ok || f.hdr.Typeflag != tar.TypeReg || f.hdr.Mode&0o111 == 0 {
		t.Errorf("%s: %s is not an executable file of the image", what, argv[0])
		return
	}
	if p != "/bin/busybox" {
		return
	}
	if len(argv) < 2 {
		t.Errorf("%s: busybox without an applet", what)
		return
	}
	if lp, _, ok := resolve(fs, "/bin/"+argv[1]); !ok || lp != "/bin/busybox" {
		t.Errorf("%s: applet %s has no link /bin/%s to /bin/busybox", what, argv[1], argv[1])
	}
}

// checkStaticELF checks that b is an x86-64 executable that needs no loader nor library.
func checkStaticELF(t *testing.T, what string, b []byte) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Errorf("%s is not an ELF file: %v", what, err)
		return
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 || (f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN) {
		t.Errorf("%s: machine %v, type %v; want an x86-64 executable", what, f.Machine, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s asks for a program interpreter: it is not static", what)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("%s needs libraries %v (%v): it is not static", what, libs, err)
	}
}

// flagValue is the argument after flag in args, "" without one.
func flagValue(args []string, flag string) string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// healthURL is the URL a busybox wget health check asks for.
func healthURL(t *testing.T, cmd []string) *url.URL {
	t.Helper()
	for _, a := range cmd {
		if strings.HasPrefix(a, "http://") {
			u, err := url.Parse(a)
			if err != nil {
				t.Fatal(err)
			}
			return u
		}
	}
	t.Fatalf("health command %q asks for no URL", cmd)
	return nil
}

// TestImagesHaveWhatTheyRun checks each image against what it says it runs: its entrypoint is
// a static executable of the image, its applets are linked, the directory it serves holds the
// index page and what the health check asks for, and its user exists.
func TestImagesHaveWhatTheyRun(t *testing.T) {
	bb := testBusybox(t)
	checkStaticELF(t, "busybox", bb)
	for _, c := range Images {
		t.Run(path.Base(c.Repo), func(t *testing.T) {
			img := testImage(t, c)
			if err := validate.Image(img); err != nil {
				t.Fatalf("validate.Image: %v", err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			cfg := cf.Config
			if cf.OS != "linux" || cf.Architecture != "amd64" || !cf.Created.Equal(epoch) ||
				!slices.Equal(cfg.Entrypoint, c.Entrypoint) || !slices.Equal(cfg.Cmd, c.Cmd) || cfg.User != c.User ||
				!slices.Equal(slices.Collect(maps.Keys(cfg.ExposedPorts)), []string{c.Port}) || cfg.StopSignal != "SIGKILL" {
				t.Errorf("config %s/%s, created %v, entrypoint %q, cmd %q, user %q, ports %v, stop signal %q",
					cf.OS, cf.Architecture, cf.Created, cfg.Entrypoint, cfg.Cmd, cfg.User, cfg.ExposedPorts, cfg.StopSignal)
			}
			fs := imageFS(t, img)
			checkRunnable(t, fs, "entrypoint", c.Entrypoint)
			checkRunnable(t, fs, "health command", c.Health)
			if _, f, _ := resolve(fs, c.Entrypoint[0]); f.hdr != nil {
				checkStaticELF(t, c.Entrypoint[0], f.data)
			}
			for p, f := range fs {
				if f.hdr.Typeflag == tar.TypeSymlink {
					if _, g, ok := resolve(fs, p); !ok || g.hdr.Typeflag != tar.TypeReg {
						t.Errorf("symlink %s -> %s leads nowhere", p, f.hdr.Linkname)
					}
				}
			}

			home := flagValue(c.Cmd, "-h")
			port := flagValue(c.Cmd, "-p")
			if f, ok := fs[home]; !ok || f.hdr.Typeflag != tar.TypeDir {
				t.Fatalf("httpd's home %q is not a directory of the image", home)
			}
			if f := fs[home+"/index.html"]; f.hdr == nil || !bytes.Contains(f.data, []byte("<title>")) {
				t.Errorf("%s/index.html is not a page", home)
			}
			u := healthURL(t, c.Health)
			if u.Port() != port && !(u.Port() == "" && port == "80") {
				t.Errorf("the health check asks %s, the server listens on port %s", u, port)
			}
			if f := fs[home+u.Path]; f.hdr == nil || f.hdr.Typeflag != tar.TypeReg {
				t.Errorf("the health check asks for %s, which %s does not hold", u.Path, home)
			} else if strings.HasPrefix(u.Path, "/cgi-bin/") && f.hdr.Mode&0o111 == 0 {
				t.Errorf("the CGI script %s%s is not executable", home, u.Path)
			}
			if n, _ := strconv.Atoi(port); c.User != "" && n < 1024 {
				t.Errorf("the image runs as %s, who may not bind port %d", c.User, n)
			}
			if uid, _, _ := strings.Cut(c.User, ":"); uid != "" && !bytes.Contains(fs["/etc/passwd"].data, []byte(":x:"+uid+":")) {
				t.Errorf("user %s is not in /etc/passwd", c.User)
			}
		})
	}
}

// TestImagesAreDeterministic builds each image again: the same busybox gives the same digest
// (and TestBuildPins checks it is the one build.lock pins). The busybox layer is the same in
// every image, so a store holds it once.
func TestImagesAreDeterministic(t *testing.T) {
	bb := testBusybox(t)
	var base v1.Hash
	for _, c := range Images {
		a := testImage(t, c)
		b, err := c.Image(bytes.Clone(bb))
		if err != nil {
			t.Fatal(err)
		}
		if da, db := mustDigest(t, a), mustDigest(t, b); da != db {
			t.Errorf("%s gives %s, then %s", c.Repo, da, db)
		}
		layers, err := a.Layers()
		if err != nil || len(layers) != 2 {
			t.Fatalf("%s: %d layers, %v; want busybox's and its own", c.Repo, len(layers), err)
		}
		d, err := layers[0].Digest()
		if err != nil {
			t.Fatal(err)
		}
		if base != (v1.Hash{}) && d != base {
			t.Errorf("%s's busybox layer is %s, another image's %s", c.Repo, d, base)
		}
		base = d
	}
}

// TestApplets runs busybox --list: every link the images have names one of its applets, and
// so does every command the metrics script calls.
func TestApplets(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("runs trixie's amd64 busybox")
	}
	bin := filepath.Join(t.TempDir(), "busybox")
	if err := os.WriteFile(bin, testBusybox(t), 0o755); err != nil { //nolint:gosec // an executable, by design
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	have := strings.Fields(string(out))
	for _, a := range append(slices.Clone(Applets), "awk", "date", "df") {
		if !slices.Contains(have, a) || !slices.Contains(Applets, a) {
			t.Errorf("applet %s: in busybox %v, linked %v", a, slices.Contains(have, a), slices.Contains(Applets, a))
		}
	}
}

// TestBuildPins keeps the images, examples/build.toml and examples/build.lock in step:
// build.toml pulls each image from Serve and renames it to its Name, and build.lock pins the
// digest and size Image makes.
func TestBuildPins(t *testing.T) {
	cfg, err := build.LoadConfig("../build.toml")
	if err != nil {
		t.Fatal(err)
	}
	lock, err := build.ReadLock("../build.lock")
	if err != nil || lock == nil {
		t.Fatalf("reading examples/build.lock: %v", err)
	}
	if len(cfg.Containers) != len(Images) || len(lock.Containers) != len(Images) {
		t.Errorf("examples/build.toml has %d [[container]], build.lock %d; want the %d images", len(cfg.Containers), len(lock.Containers), len(Images))
	}
	for _, c := range Images {
		ref := Addr + "/" + c.Repo
		i := slices.IndexFunc(cfg.Containers, func(b build.Container) bool { return b.Ref == ref })
		if i < 0 {
			t.Errorf("examples/build.toml has no [[container]] with ref %s", ref)
		} else if cfg.Containers[i].Rename != c.Name {
			t.Errorf("examples/build.toml renames %s to %q, want %s", ref, cfg.Containers[i].Rename, c.Name)
		}
		img := testImage(t, c)
		d := mustDigest(t, img).String()
		size, err := img.Size()
		if err != nil {
			t.Fatal(err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		size += m.Config.Size
		for _, l := range m.Layers {
			size += l.Size
		}
		want := build.LockedImage{Ref: ref, Digest: d, MediaType: string(m.MediaType), Platforms: []build.LockedPlatform{{Platform: "linux/amd64", Digest: d, Size: size}}}
		j := slices.IndexFunc(lock.Containers, func(l build.LockedImage) bool { return l.Ref == ref })
		if j < 0 {
			t.Errorf("examples/build.lock does not pin %s; want %+v (run cairn build on examples/build.toml)", ref, want)
			continue
		}
		if got := lock.Containers[j]; got.Digest != want.Digest || got.MediaType != want.MediaType || !slices.Equal(got.Platforms, want.Platforms) {
			t.Errorf("examples/build.lock pins %+v\nwant %+v (run cairn build on examples/build.toml)", got, want)
		}
	}
}

// exampleContainer is a container of the example site with the image it runs.
type exampleContainer struct {
	role  string
	c     site.Container
	image ContainerImage
}

func exampleContainers(t *testing.T) []exampleContainer {
	t.Helper()
	s, err := site.Load("../site")
	if err != nil {
		t.Fatal(err)
	}
	var out []exampleContainer
	for _, role := range slices.Sorted(maps.Keys(s.Roles)) {
		for _, c := range s.Roles[role].Containers {
			i := slices.IndexFunc(Images, func(im ContainerImage) bool { return im.Name == c.Image.String() })
			if i < 0 {
				t.Errorf("role %s: container %s runs %s, which is none of the example's images", role, c.Name, c.Image)
				continue
			}
			out = append(out, exampleContainer{role, c, Images[i]})
		}
	}
	if len(out) == 0 {
		t.Fatal("the example site runs no container")
	}
	return out
}

// argv is what the container runs: its entrypoint and command, the site's over the image's.
func (e exampleContainer) argv() []string {
	entry, cmd := e.image.Entrypoint, e.image.Cmd
	if len(e.c.Entrypoint) > 0 {
		entry, cmd = e.c.Entrypoint, nil
	}
	if len(e.c.Command) > 0 {
		cmd = e.c.Command
	}
	return slices.Concat(entry, cmd)
}

func (e exampleContainer) user() string {
	if e.c.User != "" {
		return e.c.User
	}
	return e.image.User
}

// TestExampleSite checks that every container of examples/site can run with what its image
// provides: the site's health command and the files' directories are in the image, a user
// other than root listens on a port above 1023, and the health check asks the port the server
// listens on.
func TestExampleSite(t *testing.T) {
	for _, e := range exampleContainers(t) {
		t.Run(e.role+"/"+e.c.Name, func(t *testing.T) {
			fs := imageFS(t, testImage(t, e.image))
			argv := e.argv()
			checkRunnable(t, fs, "the command", argv)
			if e.c.Health == nil {
				t.Fatal("no health check")
			}
			checkRunnable(t, fs, "the health command", e.c.Health.Command)
			port, _ := strconv.Atoi(lastField(flagValue(argv, "-p"), ":"))
			if u := healthURL(t, e.c.Health.Command); u.Port() != strconv.Itoa(port) && !(u.Port() == "" && port == 80) {
				t.Errorf("the health check asks %s, the server listens on port %d", u, port)
			}
			if user := e.user(); user != "" && !strings.HasPrefix(user, "0:") && port < 1024 {
				t.Errorf("runs as %s, who may not bind port %d", user, port)
			}
			for _, p := range e.c.Ports {
				if int(p.ContainerStart) != port || p.ContainerEnd != p.ContainerStart {
					t.Errorf("publishes %s, the server listens on port %d", p, port)
				}
			}
			home := flagValue(argv, "-h")
			for _, f := range e.c.Files {
				if d := fs[path.Dir(f.Target)]; d.hdr == nil || d.hdr.Typeflag != tar.TypeDir {
					t.Errorf("file %s: the image has no directory %s", f.Target, path.Dir(f.Target))
				}
				if f.Target == home+"/index.html" && !bytes.Contains(f.Data, []byte("rack1")) {
					t.Errorf("the page %s does not say which site it is from", f.Source)
				}
			}
		})
	}
}

func lastField(s, sep string) string { return s[strings.LastIndex(s, sep)+1:] }

// TestExampleSiteRuns runs every container of examples/site as podman would, as far as a
// chroot goes: its image's layers unpacked, /proc mounted and /dev/null made, the site's files
// copied to their targets and a tmpfs for each volume, its command as its user with
// its environment, on a loopback port instead of its own. The page and the health check are
// then asked for over HTTP, and the health command is run inside.
func TestExampleSiteRuns(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("runs trixie's amd64 busybox")
	}
	if os.Geteuid() != 0 {
		t.Skip("chroot, mount and mknod need root")
	}
	for _, e := range exampleContainers(t) {
		t.Run(e.role+"/"+e.c.Name, func(t *testing.T) {
			img := testImage(t, e.image)
			root := unpack(t, img)
			for _, f := range e.c.Files {
				if err := os.WriteFile(filepath.Join(root, f.Target), f.Data, 0o644); err != nil { //nolint:gosec // as the host agent writes them
					t.Fatal(err)
				}
			}
			for _, v := range e.c.Volumes {
				volume(t, root, v)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			env := slices.Clone(cf.Config.Env)
			for _, k := range slices.Sorted(maps.Keys(e.c.Env)) {
				env = append(env, k+"="+e.c.Env[k])
			}
			addr := freeAddr(t)
			argv := slices.Clone(e.argv())
			argv[slices.Index(argv, "-p")+1] = addr
			var log bytes.Buffer
			srv := chrootCmd(t, root, e.user(), cf.Config.WorkingDir, env, argv)
			srv.Stderr = &log
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })

			u := healthURL(t, e.c.Health.Command)
			u.Host = addr
			body := get(t, u.String(), 5*time.Second)
			if strings.HasPrefix(u.Path, "/cgi-bin/metrics") {
				checkMetrics(t, body)
			}
			page := get(t, "http://"+addr+"/", time.Second)
			want := "<title>"
			if len(e.c.Files) > 0 {
				want = string(e.c.Files[0].Data)
			}
			if !strings.Contains(page, want) {
				t.Errorf("GET / = %q, want %q in it", page, want)
			}
			home := flagValue(argv, "-h")
			for _, v := range e.c.Volumes {
				if rel, ok := strings.CutPrefix(v.Target, home+"/"); ok {
					if got := get(t, "http://"+addr+"/"+rel+"/"+volumeFile, time.Second); got != v.Source {
						t.Errorf("GET /%s/%s = %q, want %q", rel, volumeFile, got, v.Source)
					}
				}
			}
			health := slices.Clone(e.c.Health.Command)
			health[slices.IndexFunc(health, func(a string) bool { return strings.HasPrefix(a, "http://") })] = u.String()
			hc := chrootCmd(t, root, e.user(), cf.Config.WorkingDir, env, health)
			if out, err := hc.CombinedOutput(); err != nil {
				t.Errorf("health command %q: %v\n%s", health, err, out)
			}
			_ = srv.Process.Kill()
			_ = srv.Wait()
			if !strings.Contains(log.String(), "response:200") {
				t.Errorf("httpd -v logged no request: %q", log.String())
			}
		})
	}
}

// unpack writes an image's file system into a new directory, mounts /proc in it and makes
// /dev/null, as podman provides them.
func unpack(t *testing.T, img v1.Image) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Mkdir(root, 0o755); err != nil { //nolint:gosec // a container's root, which its user must reach
		t.Fatal(err)
	}
	fs := imageFS(t, img)
	for _, p := range slices.Sorted(maps.Keys(fs)) {
		f, dst := fs[p], filepath.Join(root, p)
		var err error
		switch f.hdr.Typeflag {
		case tar.TypeDir:
			if err = os.MkdirAll(dst, 0o755); err == nil {
				err = os.Chmod(dst, os.FileMode(f.hdr.Mode&0o777)|sticky(f.hdr.Mode))
			}
		case tar.TypeSymlink:
			err = os.Symlink(f.hdr.Linkname, dst)
		case tar.TypeReg:
			err = os.WriteFile(dst, f.data, os.FileMode(f.hdr.Mode&0o777))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"proc", "dev"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mknod(filepath.Join(root, "dev/null"), syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
		t.Skipf("making /dev/null: %v", err)
	}
	if err := os.Chmod(filepath.Join(root, "dev/null"), 0o666); err != nil {
		t.Fatal(err)
	}
	proc := filepath.Join(root, "proc")
	if err := syscall.Mount("proc", proc, "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		t.Skipf("mounting /proc: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(proc, syscall.MNT_DETACH) })
	return root
}

// volumeFile is the file a stand-in volume holds: the volume's source.
const volumeFile = "volume.txt"

// volume mounts a stand-in for a volume at its target: a small tmpfs holding volumeFile,
// read-only when the volume is. A mount, not a directory, so that df and /proc/mounts see one.
func volume(t *testing.T, root string, v site.Volume) {
	t.Helper()
	dst := filepath.Join(root, v.Target)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dst, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size=1m,mode=0755"); err != nil {
		t.Skipf("mounting a tmpfs for volume %s: %v", v, err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dst, syscall.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(dst, volumeFile), []byte(v.Source), 0o644); err != nil { //nolint:gosec // served to anyone, as the volume's files are
		t.Fatal(err)
	}
	if slices.Contains(v.Options, "ro") {
		if err := syscall.Mount("", dst, "", syscall.MS_REMOUNT|syscall.MS_RDONLY|syscall.MS_NOSUID|syscall.MS_NODEV, ""); err != nil {
			t.Fatalf("remounting %s read-only: %v", dst, err)
		}
	}
}

func sticky(mode int64) os.FileMode {
	if mode&0o1000 != 0 {
		return os.ModeSticky
	}
	return 0
}

// chrootCmd is argv run in root as user (UID:GID, numbers), in dir, with env only.
func chrootCmd(t *testing.T, root, user, dir string, env, argv []string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...) //nolint:gosec // the container's command, an absolute path inside root
	cmd.Env, cmd.Dir = env, dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	if user != "" {
		u, g, _ := strings.Cut(user, ":")
		uid, err1 := strconv.ParseUint(u, 10, 32)
		gid, err2 := strconv.ParseUint(cmp.Or(g, u), 10, 32)
		if err1 != nil || err2 != nil {
			t.Fatalf("user %q is not UID:GID", user)
		}
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	}
	return cmd
}

// freeAddr is a loopback address with a port nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// get GETs u until it answers 200 or wait is over, and returns the body.
func get(t *testing.T, u string, wait time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		resp, err := http.Get(u) //nolint:gosec // a test server on loopback
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && rerr == nil {
				return string(b)
			}
			err = fmt.Errorf("%s: %q, %v", resp.Status, b, rerr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", u, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkMetrics checks the metrics script's output: the text format, a number for each sample,
// and every metric it promises.
func checkMetrics(t *testing.T, body string) {
	t.Helper()
	names := map[string]bool{}
	for l := range strings.Lines(body) {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		name, value, ok := strings.Cut(l, " ")
		if _, err := strconv.ParseFloat(value, 64); !ok || err != nil {
			t.Errorf("metrics line %q: not NAME VALUE", l)
		}
		names[name] = true
	}
	for _, want := range []string{"node_load1", "node_load5", "node_load15", "node_memory_MemTotal_bytes", "node_memory_MemAvailable_bytes",
		"node_boot_time_seconds", "node_time_seconds", `node_filesystem_size_bytes{mountpoint="/"}`, `node_filesystem_avail_bytes{mountpoint="/"}`} {
		if !names[want] {
			t.Errorf("the metrics lack %s:\n%s", want, body)
		}
	}
}
