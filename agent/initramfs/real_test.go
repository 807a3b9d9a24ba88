package initramfs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/examples/content"
)

var (
	realOnce sync.Once
	realK    *Kernel
	realSel  *Selection
	realErr  error
)

// realSelection is what Resolve chooses of trixie's kernel for the default modules, once for
// every test: reading the modules is slow under the race detector.
func realSelection(t *testing.T) (*Kernel, *Selection) {
	t.Helper()
	k := realKernel(t)
	realOnce.Do(func() {
		start := time.Now()
		realK = k
		realSel, realErr = k.Resolve(slices.Concat(DefaultModules, ServerModules), false)
		t.Logf("resolved the default modules in %s", time.Since(start).Round(time.Millisecond))
	})
	if realErr != nil {
		t.Fatal(realErr)
	}
	return realK, realSel
}

// realKernel unpacks Debian trixie's kernel package, the one examples/build.toml carries,
// fetching it into the cache first (108 MB, once). The unpacked tree is kept beside the
// package, as unpacking it is slow under the race detector.
func realKernel(t *testing.T) *Kernel {
	t.Helper()
	if testing.Short() {
		t.Skip("reads Debian trixie's kernel package (108 MB, fetched from the Debian mirror unless cached)")
	}
	deb, err := content.Kernel(context.Background())
	if err != nil {
		t.Skipf("trixie's kernel package is not cached and could not be fetched: %v", err)
	}
	dir := filepath.Join(filepath.Dir(deb), "unpacked", content.KernelPackageSHA256)
	start := time.Now()
	k, err := UnpackKernel(context.Background(), deb, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel %s in %s (%s)", k.Version, dir, time.Since(start).Round(time.Millisecond))
	return k
}

// TestRealKernel resolves the default modules in trixie's kernel and checks the result
// against depmod's modules.dep of the same tree.
func TestRealKernel(t *testing.T) {
	k, sel := realSelection(t)
	if k.Version != content.KernelVersion {
		t.Errorf("version %s, want %s", k.Version, content.KernelVersion)
	}
	names := slices.Concat(DefaultModules, ServerModules)
	t.Logf("%d modules for %d names, %d firmware files named", len(sel.Modules), len(names), len(sel.Firmware))
	if len(sel.Missing) > 0 || len(sel.Builtin) > 0 {
		t.Errorf("trixie's kernel lacks %q and builds in %q of the default modules", sel.Missing, sel.Builtin)
	}
	var size int64
	for _, m := range sel.Modules {
		fi, err := os.Stat(m.File)
		if err != nil {
			t.Fatal(err)
		}
		size += fi.Size()
	}
	t.Logf("modules: %d KiB compressed", size>>10)

	if _, err := k.Resolve([]string{"virtio_net", "no_such_driver"}, false); err == nil || !strings.Contains(err.Error(), "no_such_driver") || !strings.Contains(err.Error(), k.Version) {
		t.Errorf("Resolve of a module trixie lacks = %v, want an error naming it and the kernel", err)
	}

	depmod, err := exec.LookPath("depmod")
	if err != nil {
		for _, p := range []string{"/sbin/depmod", "/usr/sbin/depmod"} {
			if _, serr := os.Stat(p); serr == nil {
				depmod, err = p, nil
			}
		}
	}
	if err != nil {
		t.Skip("depmod is not installed (Debian package kmod): not checking against modules.dep")
	}
	out, err := exec.Command(depmod, "-n", "-b", k.Dir, k.Version).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("depmod -n -b %s %s: %v\n%s", k.Dir, k.Version, err, ee.Stderr)
		}
		t.Fatal(err)
	}
	// depmod -n prints modules.dep first, up to the first comment.
	var dep bytes.Buffer
	deps := map[string][]string{}
	s := bufio.NewScanner(bytes.NewReader(out))
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() && !strings.HasPrefix(s.Text(), "#") {
		dep.WriteString(s.Text() + "\n")
		mod, rest, _ := strings.Cut(s.Text(), ":")
		deps[mod] = strings.Fields(rest)
	}
	// The names and the soft dependencies this kernel has as modules, closed over modules.dep,
	// are what Resolve chose.
	want := slices.Clone(names)
	for _, m := range sel.Modules {
		mi, err := ReadModInfo(m.File)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range slices.Concat(mi.SoftPre, mi.SoftPost) {
			if _, ok := k.byName[strings.ReplaceAll(d, "-", "_")]; ok {
				want = append(want, d)
			}
		}
	}
	closure, err := ResolveModules(&dep, want)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	pos := map[string]int{}
	for i, m := range sel.Modules {
		p := strings.TrimPrefix(m.Path, k.Version+"/")
		got = append(got, p)
		pos[p] = i
	}
	if a, b := slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(closure)); !slices.Equal(a, b) {
		t.Errorf("Resolve chose\n%q\ndepmod's modules.dep gives\n%q", a, b)
	}
	for _, p := range got {
		for _, d := range deps[p] {
			if pos[d] > pos[p] {
				t.Errorf("%s comes before %s, which it depends on", p, d)
			}
		}
	}
}

// TestRealInitramfs writes the agent's initramfs with trixie's modules, twice.
func TestRealInitramfs(t *testing.T) {
	_, sel := realSelection(t)
	agent := filepath.Join(t.TempDir(), "cairn-agent")
	mustWrite(t, agent, strings.Repeat("\x7fELF a stand-in for the static agent ", 1<<16))
	cfg := Config{Agent: agent, Modules: sel.Modules, ModTime: time.Unix(1767225600, 0)}
	var one, two bytes.Buffer
	start := time.Now()
	if err := Write(&one, cfg); err != nil {
		t.Fatal(err)
	}
	t.Logf("initramfs of %d modules: %d KiB compressed, written in %s", len(sel.Modules), one.Len()>>10, time.Since(start).Round(time.Millisecond))
	if err := Write(&two, cfg); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(one.Bytes(), two.Bytes()) {
		t.Error("two initramfs of the same inputs differ")
	}
	entries, _ := readNewc(t, one.Bytes())
	var list []string
	for _, m := range sel.Modules {
		list = append(list, m.Path)
		if _, ok := entries[ModulesDir+"/"+m.Path]; !ok {
			t.Errorf("the initramfs lacks %s", m.Path)
		}
	}
	if got := entries[LoadList].body; got != strings.Join(list, "\n")+"\n" {
		t.Errorf("load list:\n%s\nwant\n%s", got, strings.Join(list, "\n"))
	}
	if entries[Init].mode&0o777 != 0o755 {
		t.Errorf("/init mode %v", entries[Init].mode)
	}
}
