package agents

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/site"
)

// Snippet is a host file, ready to paste into hosts/NAME.toml, for a discovered machine: its
// MAC, its first non-removable disk by a stable path, and what the inventory says of the NIC
// and the disk in comments. It returns "" for a host that is not a discovered one or reported
// no inventory. Whatever the agent reported is checked or made a comment; nothing it sent can
// add a key.
func Snippet(h state.Host) string {
	if h.Phase != state.Discovered || len(h.Inventory) == 0 {
		return ""
	}
	var inv api.Inventory
	if err := json.Unmarshal(h.Inventory, &inv); err != nil {
		return ""
	}
	mac, err := site.ParseMAC(h.MAC)
	if err != nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# hosts/NAME.toml: the machine discovered as %s (%s).\n", h.Name, summary(inv))
	b.WriteString("# Name the file after the host (a DNS label); the daemon provisions it once the site is applied.\n")
	fmt.Fprintf(&b, "mac = %s", quote(mac.String()))
	for _, n := range inv.NICs {
		if m, err := site.ParseMAC(n.MAC); err == nil && m == mac {
			fmt.Fprintf(&b, "  # %s", comment(nicLine(n)))
			break
		}
	}
	b.WriteString("\n")
	if d, path, ok := firstDisk(inv.Disks); ok {
		fmt.Fprintf(&b, "disk = %s  # %s\n", quote(path), comment(diskLine(d)))
	} else {
		b.WriteString("# disk: the agent found no non-removable disk with a usable path; defaults.disk applies\n")
	}
	b.WriteString("roles = []\n")
	return b.String()
}

// firstDisk is the first non-removable disk, by its most stable path that a site accepts.
func firstDisk(disks []api.Disk) (api.Disk, string, bool) {
	for _, d := range disks {
		if d.Removable {
			continue
		}
		for _, p := range append(append(append([]string{}, d.ByID...), d.ByPath), d.Path) {
			var sd site.Disk
			if strings.HasPrefix(p, "/dev/") && sd.UnmarshalText([]byte(p)) == nil {
				return d, p, true
			}
		}
	}
	return api.Disk{}, "", false
}

func nicLine(n api.NIC) string {
	parts := []string{n.Name}
	if n.Driver != "" {
		parts = append(parts, n.Driver)
	}
	if n.SpeedMbps > 0 {
		parts = append(parts, fmt.Sprintf("%d Mb/s", n.SpeedMbps))
	}
	return strings.Join(parts, ", ")
}

func diskLine(d api.Disk) string {
	parts := []string{d.Name, bytesIEC(d.SizeBytes)}
	if d.Model != "" {
		parts = append(parts, d.Model)
	}
	if d.Serial != "" {
		parts = append(parts, "serial "+d.Serial)
	}
	return strings.Join(parts, ", ")
}

// comment makes s one line of a TOML comment.
func comment(s string) string { return text(s, 120) }

// quote writes s as a TOML basic string.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04X", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
