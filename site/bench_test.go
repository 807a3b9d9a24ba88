package site

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

const benchHosts = 10000

// BenchmarkLoad loads and validates a generated site of 10,000 hosts, 4 roles and a mounted
// file: the size of a large datacenter hall on one appliance.
func BenchmarkLoad(b *testing.B) {
	dir := writeSite(b, benchSite())
	b.ReportAllocs()
	for b.Loop() {
		s, err := Load(dir)
		if err != nil {
			b.Fatal(err)
		}
		if len(s.Hosts) != benchHosts {
			b.Fatalf("loaded %d hosts, want %d", len(s.Hosts), benchHosts)
		}
	}
}

// BenchmarkLoaderEdit loads the same site again after one host file changed, as the daemon
// does after an edit.
func BenchmarkLoaderEdit(b *testing.B) {
	files := benchSite()
	dir := writeSite(b, files)
	l := NewLoader(dir)
	if _, err := l.Load(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		p := fmt.Sprintf("hosts/h%05d.toml", i*7919%benchHosts)
		if err := os.WriteFile(filepath.Join(dir, p), []byte(files[p]+"# edit "+strconv.Itoa(i)+"\n"), 0o644); err != nil {
			b.Fatal(err)
		}
		l.Changed(p)
		s, err := l.Load()
		if err != nil {
			b.Fatal(err)
		}
		if len(s.Hosts) != benchHosts {
			b.Fatalf("loaded %d hosts, want %d", len(s.Hosts), benchHosts)
		}
	}
}

// benchSite is a site of 10,000 hosts, 4 roles and a mounted file: the size of a large
// datacenter hall on one appliance.
func benchSite() map[string]string {
	const hosts = benchHosts
	files := map[string]string{
		"site.toml": `[site]
name = "hall"
domain = "hall.example.internal"
[network]
interface = "eth1"
cidr = "10.0.0.0/16"
appliance_ip = "10.0.0.1"
gateway = "10.0.0.254"
dns = ["10.0.0.1"]
dhcp = "full"
dhcp_range = { start = "10.0.250.1", end = "10.0.250.250" }
[defaults]
os = "debian-12"
disk = "first-nonremovable"
ssh_authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIB85oQDMSt5XDYHSkYtz9n3hk/62enAGjlvDehzUvdj ops@hall"]
`,
		"files/app.conf": "listen 8080\n",
	}
	for r := range 4 {
		files[fmt.Sprintf("roles/r%d.toml", r)] = fmt.Sprintf(`[[container]]
name = "app%d"
image = "registry.example/app%d:1.0"
ports = ["%d:8080"]
env = { MODE = "prod" }
[container.health]
command = ["true"]
[[container.file]]
source = "files/app.conf"
target = "/etc/app.conf"
`, r, r, 8000+r)
	}
	for i := range hosts {
		files[fmt.Sprintf("hosts/h%05d.toml", i)] = fmt.Sprintf(`mac = "52:54:00:%02x:%02x:%02x"
ip = "10.0.%d.%d"
roles = ["r%d", "r%d"]
provision = 1
[labels]
rack = "r%d"
`, i>>16&0xff, i>>8&0xff, i&0xff, 1+i/200, 10+i%200, i%2, 2+i%2, i/40)
	}
	return files
}
