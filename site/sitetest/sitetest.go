// Package sitetest writes site directories for tests.
package sitetest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Write writes files (slash paths relative to dir: content) into dir, making the directories
// they need.
func Write(tb testing.TB, dir string, files map[string]string) {
	tb.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// A hall is a generated site as large as a datacenter hall: a /16 network, a web role and a
// monitoring role, and hosts numbered from 0 that take both roles.

// Hall returns the site.toml and the two roles of a hall, the roles running images web and mon.
func Hall(web, mon string) map[string]string {
	return map[string]string{
		"site.toml": `[site]
name = "hall"
[network]
interface = "eth1"
cidr = "10.0.0.0/16"
appliance_ip = "10.0.0.1"
dhcp = "full"
dhcp_range = { start = "10.0.250.1", end = "10.0.250.250" }
[defaults]
os = "debian-12"
disk = "first-nonremovable"
`,
		"roles/web.toml": fmt.Sprintf("[[container]]\nname = \"web\"\nimage = %q\nports = [\"80:80\"]\n", web),
		"roles/mon.toml": fmt.Sprintf("[[container]]\nname = \"exporter\"\nimage = %q\nnetwork = \"host\"\n", mon),
	}
}

// HallHost is the file of host number i of a hall (up to 40,000): its own MAC and address,
// both roles, the provisioning counter and a rack label.
func HallHost(i, provision int, rack string) string {
	return fmt.Sprintf("mac = \"52:54:00:%02x:%02x:%02x\"\nip = \"10.0.%d.%d\"\nroles = [\"web\", \"mon\"]\nprovision = %d\n[labels]\nrack = %q\n",
		i>>16&0xff, i>>8&0xff, i&0xff, 1+i/200, 10+i%200, provision, rack)
}
