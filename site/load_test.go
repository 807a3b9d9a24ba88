package site

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-appliance/cairn/site/sitetest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// TestGolden loads every broken site under testdata/ and compares all its problems, one per
// line as cairn site validate prints them, with testdata/NAME.golden.
func TestGolden(t *testing.T) {
	entries, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if !e.IsDir() || e.Name() == "fuzz" {
			continue
		}
		n++
		t.Run(e.Name(), func(t *testing.T) {
			s, err := Load(filepath.Join("testdata", e.Name()))
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Load() = %v, %v; want Errors", s, err)
			}
			got := err.Error() + "\n"
			golden := filepath.Join("testdata", e.Name()+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./site -run TestGolden -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("Load(%s) problems differ from %s (-update rewrites it)\n--- got\n%s--- want\n%s", e.Name(), golden, got, want)
			}
			for _, e := range errs {
				if e.File == "" || e.Line < 1 || e.Column < 1 || e.Message == "" {
					t.Errorf("problem without a position or message: %+v", e)
				}
			}
		})
	}
	if n < 10 {
		t.Fatalf("found %d golden cases, want at least 10", n)
	}
}

func TestExampleSite(t *testing.T) {
	s, err := Load("../examples/site")
	if err != nil {
		t.Fatalf("Load(examples/site):\n%v", err)
	}
	if len(s.Hosts) < 3 || len(s.Roles) < 2 {
		t.Fatalf("examples/site has %d hosts and %d roles, want at least 3 and 2", len(s.Hosts), len(s.Roles))
	}
	var files int
	for _, r := range s.Roles {
		for _, c := range r.Containers {
			for _, f := range c.Files {
				files++
				if len(f.Data) == 0 || len(f.SHA256) != 64 {
					t.Errorf("file %s of %s/%s: data %d bytes, sha256 %q", f.Source, r.Name, c.Name, len(f.Data), f.SHA256)
				}
			}
		}
	}
	if files == 0 {
		t.Error("examples/site mounts no file into a container")
	}
}

// writeSite writes files (path -> content) into a new directory and returns it.
func writeSite(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	sitetest.Write(t, dir, files)
	return dir
}

const minimalSite = `[site]
name = "lab"
[network]
interface = "eth1"
cidr = "10.0.0.0/24"
appliance_ip = "10.0.0.1"
dhcp = "proxy"
[defaults]
os = "debian-12"
disk = "first-nonremovable"
`

// TestUnknownKeyPosition pins the exact position of an unknown key: line 7, column 1.
func TestUnknownKeyPosition(t *testing.T) {
	dir := writeSite(t, map[string]string{
		"site.toml":    minimalSite,
		"hosts/a.toml": "# a\n\nmac = \"52:54:00:00:00:01\"\n\nip = \"10.0.0.9\"\n\ncolour = \"red\"\n",
	})
	_, err := Load(dir)
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 {
		t.Fatalf("Load() = %v, want one problem", err)
	}
	if got, want := errs[0].Error(), `hosts/a.toml:7:1: colour: unknown key in host file; did you mean "roles"?`; got != want {
		// the hint may name another key; the position is what matters
		if !strings.HasPrefix(got, "hosts/a.toml:7:1: colour: unknown key") {
			t.Errorf("problem = %q, want %q", got, want)
		}
	}
}

func TestLoadDefaults(t *testing.T) {
	dir := writeSite(t, map[string]string{
		"site.toml": minimalSite + `ssh_authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIB85oQDMSt5XDYHSkYtz9n3hk/62enAGjlvDehzUvdj a"]` + "\n",
		"hosts/b.toml": `mac = "52:54:00:00:00:02"
os = "rocky-9"
timezone = "Europe/Berlin"
roles = ["web"]
[[partition]]
label = "data"
mount = "/data"
`,
		"hosts/a.toml": `mac = "52-54-00-AA-00-01"`,
		"roles/web.toml": `[[container]]
name = "web"
image = "nginx"
[container.health]
command = ["true"]
`,
	})
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Hosts) != 2 || s.Hosts[0].Name != "a" || s.Hosts[1].Name != "b" {
		t.Fatalf("hosts = %+v, want a and b in order", s.Hosts)
	}
	a, b := s.Hosts[0], s.Hosts[1]
	tests := []struct{ what, got, want string }{
		{"a.MAC", a.MAC.String(), "52:54:00:aa:00:01"},
		{"a.OS", a.OS, "debian-12"},
		{"a.Disk", string(a.Disk), "first-nonremovable"},
		{"a.Timezone", a.Timezone, "UTC"},
		{"b.OS", b.OS, "rocky-9"},
		{"b.Timezone", b.Timezone, "Europe/Berlin"},
		{"b.Partitions[0].Filesystem", b.Partitions[0].Filesystem, "ext4"},
		{"web image", s.Roles["web"].Containers[0].Image.String(), "docker.io/library/nginx:latest"},
		{"web restart", s.Roles["web"].Containers[0].Restart, "always"},
		{"web network", s.Roles["web"].Containers[0].Network, "bridge"},
		{"web health interval", s.Roles["web"].Containers[0].Health.Interval.String(), "30s"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", tt.what, tt.got, tt.want)
		}
	}
	if len(a.SSHAuthorizedKeys) != 1 {
		t.Errorf("a.SSHAuthorizedKeys = %q, want the default key", a.SSHAuthorizedKeys)
	}
}

func TestLoadNotADirectory(t *testing.T) {
	for _, dir := range []string{filepath.Join(t.TempDir(), "missing"), "load_test.go"} {
		if _, err := Load(dir); !errors.Is(err, ErrNoSite) {
			t.Errorf("Load(%q) = %v, want ErrNoSite", dir, err)
		}
	}
}
