package site

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cairn-appliance/cairn/site/sitetest"
)

const loaderSite = `[site]
name = "hall"
[network]
interface = "eth1"
cidr = "10.0.0.0/24"
appliance_ip = "10.0.0.1"
dhcp = "off"
[defaults]
os = "debian-12"
disk = "first-nonremovable"
timezone = "%s"
`

// loaderFiles is more, plus a site.toml (time zone UTC) and a web role.
func loaderFiles(more map[string]string) map[string]string {
	files := map[string]string{
		SiteFile:         fmt.Sprintf(loaderSite, "UTC"),
		"roles/web.toml": "[[container]]\nname = \"web\"\nimage = \"docker.io/library/nginx:1.27\"\n",
	}
	maps.Copy(files, more)
	return files
}

func loaderHost(i, variant int) string {
	switch variant {
	case 0, 1, 2:
		return fmt.Sprintf("mac = \"52:54:00:00:00:%02x\"\nip = \"10.0.0.%d\"\nroles = [\"web\"]\n[labels]\nv = \"%d\"\n", i, 10+i, variant)
	case 3: // a MAC another host has
		return fmt.Sprintf("mac = \"52:54:00:00:00:%02x\"\n", (i+1)%40)
	case 4: // a syntax error
		return "mac = \"52:54:00:00:00:01\n"
	case 5: // an unknown role and a bad time zone
		return fmt.Sprintf("mac = \"52:54:00:00:00:%02x\"\nroles = [\"wbe\"]\ntimezone = \"Mars/Base\"\n", i)
	default: // a name of its own, with partitions
		return fmt.Sprintf("name = \"named-%d\"\nmac = \"52:54:00:00:00:%02x\"\n[[partition]]\nlabel = \"data\"\nmount = \"/data\"\n", i, i)
	}
}

// outcome is what a load gives, comparable across loads.
func outcome(t *testing.T, s *Site, err error) string {
	t.Helper()
	if err != nil {
		return "error: " + err.Error()
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestLoaderMatchesLoad edits a site at random (host files changed, broken, fixed, added,
// removed; defaults and roles changed) and checks after every round that a Loader told what
// changed returns exactly what a fresh Load does.
func TestLoaderMatchesLoad(t *testing.T) {
	dir := t.TempDir()
	files := loaderFiles(nil)
	for i := range 40 {
		files[fmt.Sprintf("hosts/h%02d.toml", i)] = loaderHost(i, 0)
	}
	sitetest.Write(t, dir, files)
	l := NewLoader(dir)
	rng := rand.New(rand.NewPCG(3, 4))
	broken := map[int]bool{} // hosts whose file is broken or gone
	valid := 0
	for round := range 150 {
		var changed []string
		write := func(i, variant int) {
			p := fmt.Sprintf("hosts/h%02d.toml", i)
			sitetest.Write(t, dir, map[string]string{p: loaderHost(i, variant)})
			changed = append(changed, p)
			if variant > 2 { // variant 6 is valid, but counts as a file to rewrite
				broken[i] = true
			} else {
				delete(broken, i)
			}
		}
		for range 1 + rng.IntN(3) {
			i := rng.IntN(40)
			switch k := rng.IntN(20); {
			case k == 0:
				sitetest.Write(t, dir, map[string]string{SiteFile: fmt.Sprintf(loaderSite, []string{"UTC", "Europe/Berlin"}[rng.IntN(2)])})
			case k == 1:
				sitetest.Write(t, dir, map[string]string{"roles/web.toml": fmt.Sprintf("[[container]]\nname = \"web\"\nimage = \"docker.io/library/nginx:1.%d\"\n", rng.IntN(3))})
			case k == 2:
				p := fmt.Sprintf("hosts/h%02d.toml", i)
				_ = os.Remove(filepath.Join(dir, p))
				changed = append(changed, p)
			case k == 3:
				// Files that come and go under other names: a new host, a note, a
				// sub-directory (an error until it goes again).
				p := []string{fmt.Sprintf("hosts/new%02d.toml", i), "hosts/notes.txt", "hosts/sub/x.toml"}[i%3]
				if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
					_ = os.RemoveAll(filepath.Join(dir, filepath.Dir(p), "sub"))
					_ = os.Remove(filepath.Join(dir, p))
				} else {
					sitetest.Write(t, dir, map[string]string{p: loaderHost(40+i, rng.IntN(3))})
				}
				changed = append(changed, p)
			case k < 7:
				write(i, 3+rng.IntN(4)) // broken, or named, or with partitions
			case k < 12 && len(broken) > 0:
				b := slices.Min(slices.Collect(maps.Keys(broken))) // the same one every run
				write(b, rng.IntN(3))                              // fixed
				delete(broken, b)
			default:
				write(i, rng.IntN(3))
			}
		}
		l.Changed(changed...)
		s, err := l.Load()
		got := outcome(t, s, err)
		fresh, ferr := Load(dir)
		want := outcome(t, fresh, ferr)
		if got != want {
			t.Fatalf("round %d: the loader and Load differ\nloader: %s\nLoad:   %s", round, got, want)
		}
		if err == nil {
			valid++
		}
	}
	t.Logf("%d of 150 rounds loaded a valid site", valid)
	if valid < 20 || valid > 130 {
		t.Fatalf("%d of 150 rounds loaded a valid site; the edits should give both kinds", valid)
	}
}

// TestLoaderKeepsWhatDidNotChange checks that unchanged hosts come back as the same values, that
// a file nobody reported is not read again, and what is read every time all the same.
func TestLoaderKeepsWhatDidNotChange(t *testing.T) {
	dir := t.TempDir()
	sitetest.Write(t, dir, loaderFiles(map[string]string{
		"hosts/h01.toml":   loaderHost(1, 0),
		"hosts/h02.toml":   loaderHost(2, 0),
		"shared/h03.toml":  loaderHost(3, 0),
		"shared/note.toml": "",
	}))
	if err := os.Symlink("../shared/h03.toml", filepath.Join(dir, "hosts/h03.toml")); err != nil {
		t.Fatal(err)
	}
	l := NewLoader(dir)
	first, err := l.Load()
	if err != nil {
		t.Fatal(err)
	}
	sitetest.Write(t, dir, map[string]string{"hosts/h01.toml": loaderHost(1, 1), "hosts/h02.toml": loaderHost(2, 1), "shared/h03.toml": loaderHost(3, 1)})
	l.Changed("hosts/h01.toml")
	second, err := l.Load()
	if err != nil {
		t.Fatal(err)
	}
	if second.Hosts[0] == first.Hosts[0] || second.Hosts[0].Labels["v"] != "1" {
		t.Errorf("h01 was reported changed but not read again: %+v", second.Hosts[0])
	}
	if second.Hosts[1] != first.Hosts[1] {
		t.Errorf("h02 was not reported changed but is a new value")
	}
	if second.Hosts[2].Labels["v"] != "1" {
		t.Errorf("h03, a symlink, was not read again: %+v", second.Hosts[2])
	}
	// New defaults give every host anew.
	sitetest.Write(t, dir, map[string]string{SiteFile: fmt.Sprintf(loaderSite, "Europe/Berlin")})
	third, err := l.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range third.Hosts {
		if h.Timezone != "Europe/Berlin" {
			t.Errorf("host %s has time zone %s after the default changed", h.Name, h.Timezone)
		}
	}
	// Forget reads everything again.
	l.Forget()
	fourth, err := l.Load()
	if err != nil {
		t.Fatal(err)
	}
	if fourth.Hosts[1].Labels["v"] != "1" {
		t.Errorf("after Forget, h02 was not read again: %+v", fourth.Hosts[1])
	}
}

// TestLoaderFollowsSwappedDirectory swaps the hosts directory behind a ..data symlink, as a
// projected volume does, and checks that the loader reads the new files unprompted.
func TestLoaderFollowsSwappedDirectory(t *testing.T) {
	dir := t.TempDir()
	sitetest.Write(t, dir, loaderFiles(map[string]string{
		"..v1/h01.toml": loaderHost(1, 0),
		"..v2/h01.toml": loaderHost(1, 2),
		"..v2/h02.toml": loaderHost(2, 2),
	}))
	if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data", filepath.Join(dir, "hosts")); err != nil {
		t.Fatal(err)
	}
	l := NewLoader(dir)
	if s, err := l.Load(); err != nil || len(s.Hosts) != 1 {
		t.Fatalf("Load() = %v, %v", s, err)
	}
	if err := os.Symlink("..v2", filepath.Join(dir, "..data.new")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data.new"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	s, err := l.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Hosts) != 2 || s.Hosts[0].Labels["v"] != "2" {
		t.Fatalf("after the swap the loader returned %d hosts, h01 labelled %v", len(s.Hosts), s.Hosts[0].Labels)
	}
}

// TestLoaderHostsDirAppears starts from a site without hosts/ and adds a host file that is a
// symlink, reported as changed.
func TestLoaderHostsDirAppears(t *testing.T) {
	dir := t.TempDir()
	sitetest.Write(t, dir, loaderFiles(map[string]string{
		"shared/h01.toml": loaderHost(1, 0),
	}))
	l := NewLoader(dir)
	if s, err := l.Load(); err != nil || len(s.Hosts) != 0 {
		t.Fatalf("Load() = %v, %v; want a site without hosts", s, err)
	}
	if err := os.Mkdir(filepath.Join(dir, "hosts"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../shared/h01.toml", filepath.Join(dir, "hosts/h01.toml")); err != nil {
		t.Fatal(err)
	}
	l.Changed("hosts/h01.toml")
	if s, err := l.Load(); err != nil || len(s.Hosts) != 1 {
		t.Fatalf("Load() = %v, %v; want the new host", s, err)
	}
}
