package site

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-appliance/cairn/site/sitetest"
)

func TestRaiseProvision(t *testing.T) {
	const commented = `# web-01: the front of rack 1
mac = "52:54:00:20:00:11"   # the onboard NIC
ip  = "10.0.0.11"
roles = ["web"]
provision	=   3   # raised after the disk swap of 2024-05
disk = "first-nonremovable"

[labels]
rack = "r1"   # aligned on purpose
provision = "not the counter"
`
	const bare = "mac = \"52:54:00:20:00:12\"\r\n# no provision here\r\n\r\n[labels]\r\nrack = \"r2\"\r\n"
	for _, tt := range []struct {
		name     string
		files    map[string]string // over a hall's site.toml and roles
		host     string
		wantN    int
		wantFile string // relative to the site; "" when an error is wanted
		want     string // the file after the edit, or a part of the error
	}{
		{name: "existing value", files: map[string]string{"hosts/web-01.toml": commented}, host: "web-01", wantN: 4,
			wantFile: "hosts/web-01.toml", want: strings.Replace(commented, "=   3   #", "=   4   #", 1)},
		{name: "missing value", files: map[string]string{"hosts/web-02.toml": bare}, host: "web-02", wantN: 1,
			wantFile: "hosts/web-02.toml", want: "provision = 1\n" + bare},
		{name: "value with underscores", files: map[string]string{"hosts/a.toml": "mac = \"52:54:00:00:00:01\"\nprovision = 1_009\n"}, host: "a", wantN: 1010,
			wantFile: "hosts/a.toml", want: "mac = \"52:54:00:00:00:01\"\nprovision = 1010\n"},
		{name: "hex value at the end of the file", files: map[string]string{"hosts/a.toml": "mac = \"52:54:00:00:00:01\"\nprovision = 0x0f"}, host: "a", wantN: 16,
			wantFile: "hosts/a.toml", want: "mac = \"52:54:00:00:00:01\"\nprovision = 16"},
		{name: "host named inside another file", files: map[string]string{"hosts/rack1-u11.toml": "name = \"db-01\"\nmac = \"52:54:00:00:00:01\"\nprovision = 0\n"}, host: "db-01", wantN: 1,
			wantFile: "hosts/rack1-u11.toml", want: "name = \"db-01\"\nmac = \"52:54:00:00:00:01\"\nprovision = 1\n"},
		{name: "no such host", files: map[string]string{"hosts/a.toml": "mac = \"52:54:00:00:00:01\"\n"}, host: "b",
			want: `has no host "b"`},
		{name: "a site that does not load", files: map[string]string{"hosts/a.toml": "mac = \"52:54:00:00:00:01\"\nprovision = \"one\"\n"}, host: "a",
			want: "does not load, fix it first (cairn site validate "},
		{name: "an edit that breaks the site is put back", files: map[string]string{"hosts/a.toml": "mac = \"52:54:00:00:00:01\"\nprovision = 9223372036854775807 # as high as it goes\n"}, host: "a",
			want: "raising provision broke the site, left as it was: hosts/a.toml:2:13: provision"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			files := sitetest.Hall("registry.example/web:1", "registry.example/mon:1")
			maps.Copy(files, tt.files)
			sitetest.Write(t, dir, files)
			for name := range tt.files {
				if err := os.Chmod(filepath.Join(dir, name), 0o640); err != nil {
					t.Fatal(err)
				}
			}
			n, file, err := RaiseProvision(dir, tt.host)
			if tt.wantFile == "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("RaiseProvision(%q) = %d, %q, %v, want an error with %q", tt.host, n, file, err, tt.want)
				}
				for name, content := range tt.files {
					if b, _ := os.ReadFile(filepath.Join(dir, name)); string(b) != content {
						t.Errorf("%s after a failed RaiseProvision:\n%s\nwant it as it was:\n%s", name, b, content)
					}
				}
			} else {
				if err != nil {
					t.Fatalf("RaiseProvision(%q) = %v", tt.host, err)
				}
				if want := filepath.Join(dir, filepath.FromSlash(tt.wantFile)); n != tt.wantN || file != want {
					t.Errorf("RaiseProvision(%q) = %d, %q, want %d, %q", tt.host, n, file, tt.wantN, want)
				}
				if b, _ := os.ReadFile(file); string(b) != tt.want {
					t.Errorf("%s after RaiseProvision:\n%q\nwant\n%q", tt.wantFile, b, tt.want)
				}
				if info, err := os.Stat(file); err != nil || info.Mode().Perm() != 0o640 {
					t.Errorf("%s after RaiseProvision: %v, %v, want mode 0640", tt.wantFile, info.Mode(), err)
				}
				s, err := Load(dir)
				if err != nil {
					t.Fatal(err)
				}
				for _, h := range s.Hosts {
					if h.Name == tt.host && h.Provision != tt.wantN {
						t.Errorf("%s loads with provision %d, want %d", tt.host, h.Provision, tt.wantN)
					}
				}
			}
			entries, _ := os.ReadDir(filepath.Join(dir, HostsDir))
			if len(entries) != len(tt.files) {
				t.Errorf("hosts/ holds %d files after RaiseProvision, want %d (a temporary file left?)", len(entries), len(tt.files))
			}
		})
	}
}

// TestRaiseProvisionTemporaryFile checks that the temporary file is one the loader passes
// over: a site read while the edit is half done is the site as it was.
func TestRaiseProvisionTemporaryFile(t *testing.T) {
	dir := t.TempDir()
	files := sitetest.Hall("registry.example/web:1", "registry.example/mon:1")
	files["hosts/a.toml"] = "mac = \"52:54:00:00:00:01\"\n"
	sitetest.Write(t, dir, files)
	f, err := os.CreateTemp(filepath.Join(dir, HostsDir), tempPattern("a.toml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("provision = 1\nmac = "); err != nil { // half written
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(f.Name()), ".a.toml.") {
		t.Errorf("temporary file %s: want a hidden name after the file it replaces", f.Name())
	}
	s, err := Load(dir)
	if err != nil || len(s.Hosts) != 1 || s.Hosts[0].Provision != 0 {
		t.Errorf("Load with %s beside the host file = %v, want the site as it was", filepath.Base(f.Name()), err)
	}
}

// TestRaiseProvisionSymlink edits the target of a host file that is a symlink, which stays one.
func TestRaiseProvisionSymlink(t *testing.T) {
	dir := t.TempDir()
	files := sitetest.Hall("registry.example/web:1", "registry.example/mon:1")
	files["machines/a.toml"] = "mac = \"52:54:00:00:00:01\"\nprovision = 2\n"
	sitetest.Write(t, dir, files)
	if err := os.MkdirAll(filepath.Join(dir, "hosts"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../machines/a.toml", filepath.Join(dir, "hosts", "a.toml")); err != nil {
		t.Fatal(err)
	}
	n, _, err := RaiseProvision(dir, "a")
	if err != nil || n != 3 {
		t.Fatalf("RaiseProvision(a) = %d, %v, want 3", n, err)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "hosts", "a.toml")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("hosts/a.toml after RaiseProvision: %v, %v, want it still a symlink", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "machines", "a.toml")); string(b) != "mac = \"52:54:00:00:00:01\"\nprovision = 3\n" {
		t.Errorf("the symlink's target after RaiseProvision:\n%s", b)
	}
}
