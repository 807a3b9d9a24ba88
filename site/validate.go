package site

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // time zones are checked the same on every machine, tzdata installed or not

	"github.com/cairn-appliance/cairn/site/tomlpos"

	"golang.org/x/crypto/ssh"
)

var (
	hostnameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	roleNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	envNameRe  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	labelKeyRe = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$`)
)

// validate runs the checks that need more than one value, or more than one file, once every
// file has been decoded.
func (l *loader) validate() {
	if l.siteDoc != nil {
		l.validateNetwork()
		l.validateDefaults()
	}
	for _, e := range l.roles {
		l.validateRole(e)
	}
	l.validateHosts()
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	n := binary.BigEndian.Uint32(a[:]) | 1<<(32-p.Bits()) - 1
	binary.BigEndian.PutUint32(a[:], n)
	return netip.AddrFrom4(a)
}

// usable checks that a lies inside the site's network and is neither its network nor its
// broadcast address. It reports on d at path and returns whether a is usable.
func (l *loader) usable(d *tomlpos.Document, path string, a netip.Addr) bool {
	cidr := l.site.Network.CIDR
	if !cidr.IsValid() || !a.IsValid() {
		return false
	}
	var msg string
	switch {
	case !cidr.Contains(a):
		msg = fmt.Sprintf("%s is outside network.cidr %s", a, cidr)
	case a == cidr.Addr():
		msg = fmt.Sprintf("%s is the network address of %s", a, cidr)
	case a == lastAddr(cidr):
		msg = fmt.Sprintf("%s is the broadcast address of %s", a, cidr)
	default:
		return true
	}
	l.add(d.ErrAt(path, false, msg, fmt.Sprintf("pick an address from %s to %s", cidr.Addr().Next(), lastAddr(cidr).Prev())))
	return false
}

func validIfname(s string) bool {
	return len(s) <= 15 && s != "." && s != ".." && !strings.ContainsAny(s, "/ \t\n:")
}

var dnsNameRe = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

func (l *loader) validateNetwork() {
	d, n := l.siteDoc, &l.site.Network
	if s := l.site.Settings.Domain; s != "" && (len(s) > 253 || !dnsNameRe.MatchString(s)) {
		l.add(d.ErrAt("site.domain", false, fmt.Sprintf("%q is not a DNS domain", s), `use lowercase labels separated by dots, e.g. "rack1.example.internal"`))
	}
	if n.Interface != "" && !validIfname(n.Interface) {
		l.add(d.ErrAt("network.interface", false, fmt.Sprintf("%q is not a network interface name", n.Interface),
			"Linux names have at most 15 characters and no '/', ':' or spaces, e.g. \"eth1\" or \"enp3s0\""))
	}
	for i, s := range n.NTP {
		if _, err := netip.ParseAddr(s); err != nil && !dnsNameRe.MatchString(s) {
			l.add(d.ErrAt(tomlpos.Elem("network.ntp", i), false, fmt.Sprintf("%q is neither an IP address nor a host name", s), ""))
		}
	}
	if !n.CIDR.IsValid() {
		return
	}
	if n.CIDR.Bits() > 30 {
		l.add(d.ErrAt("network.cidr", false, fmt.Sprintf("%s leaves no room for hosts", n.CIDR), "use a prefix of /30 or shorter, e.g. /24"))
		return
	}
	l.usable(d, "network.appliance_ip", n.ApplianceIP)
	if n.Gateway.IsValid() {
		l.usable(d, "network.gateway", n.Gateway)
	}
	if n.DHCP != "full" {
		return
	}
	r := n.DHCPRange
	if r == nil {
		l.add(d.ErrAt("network.dhcp", false, `dhcp = "full" needs network.dhcp_range`,
			`add dhcp_range = { start = "...", end = "..." }: the addresses machines not yet in hosts/ are leased`))
		return
	}
	okStart := l.usable(d, "network.dhcp_range.start", r.Start)
	okEnd := l.usable(d, "network.dhcp_range.end", r.End)
	if !okStart || !okEnd {
		return
	}
	if r.End.Less(r.Start) {
		l.add(d.ErrAt("network.dhcp_range.end", false, fmt.Sprintf("the range ends (%s) before it starts (%s)", r.End, r.Start), "swap start and end"))
		return
	}
	if r.Contains(n.ApplianceIP) {
		l.add(d.ErrAt("network.dhcp_range", true, fmt.Sprintf("the range %s-%s holds the appliance's own address %s", r.Start, r.End, n.ApplianceIP), "move the range or network.appliance_ip"))
	}
	if r.Contains(n.Gateway) {
		l.add(d.ErrAt("network.dhcp_range", true, fmt.Sprintf("the range %s-%s holds the gateway %s", r.Start, r.End, n.Gateway), "move the range or network.gateway"))
	}
}

func (l *loader) validateDefaults() {
	df := &l.site.Defaults
	l.add(checkKeys(l.siteDoc, "defaults.ssh_authorized_keys", df.SSHAuthorizedKeys)...)
	l.add(checkTimezone(l.siteDoc, "defaults.timezone", df.Timezone)...)
}

func checkKeys(d *tomlpos.Document, path string, keys []string) (errs []*Error) {
	for i, k := range keys {
		if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k)); err != nil {
			errs = append(errs, d.ErrAt(tomlpos.Elem(path, i), false, "not an SSH public key: "+strings.TrimPrefix(err.Error(), "ssh: "),
				`paste one line of an authorized_keys or .pub file, e.g. "ssh-ed25519 AAAA... admin@example"`))
		}
	}
	return errs
}

var tzCache sync.Map // string -> bool: whether it is a known zone

func checkTimezone(d *tomlpos.Document, path, tz string) []*Error {
	if tz == "" {
		return nil
	}
	known, ok := tzCache.Load(tz)
	if !ok {
		_, err := time.LoadLocation(tz)
		known, _ = tzCache.LoadOrStore(tz, err == nil && tz != "Local") // Local differs from machine to machine
	}
	if !known.(bool) {
		return []*Error{d.ErrAt(path, false, fmt.Sprintf("%q is not a known time zone", tz), `use an IANA name such as "UTC" or "Europe/Berlin"`)}
	}
	return nil
}

func (l *loader) validateRole(e roleEntry) {
	r, d := e.role, e.doc
	if !roleNameRe.MatchString(r.Name) {
		l.add(fileError(r.File, fmt.Sprintf("%q is not a valid role name", r.Name),
			"rename the file: lowercase letters, digits, '-' and '_', e.g. roles/web.toml"))
	}
	names := map[string]int{}
	for i := range r.Containers {
		c, p := &r.Containers[i], tomlpos.Elem("container", i)
		if c.Name != "" {
			if j, dup := names[c.Name]; dup {
				l.add(d.ErrAt(p+".name", false, fmt.Sprintf("container %q is already defined at %s", c.Name, d.Where(tomlpos.Elem("container", j)+".name")),
					"container names must be unique in a role"))
			} else {
				names[c.Name] = i
			}
		}
		for _, k := range tomlpos.SortedKeys(c.Env) {
			if !envNameRe.MatchString(k) {
				l.add(d.ErrAt(tomlpos.Join(p+".env", k), true, fmt.Sprintf("%q is not an environment variable name", k), "use letters, digits and '_', not starting with a digit"))
			}
		}
		if c.Network == "host" && len(c.Ports) > 0 {
			l.add(d.ErrAt(p+".ports", true, `ports are not published with network = "host"`, "remove ports: the container listens on the host's network directly"))
		}
		for j := range i {
			if a, b, ok := overlap(r.Containers[j].Ports, c.Ports); ok {
				l.add(d.ErrAt(tomlpos.Elem(p+".ports", b), false, fmt.Sprintf("host port %s is also published by container %q (%s)", c.Ports[b], r.Containers[j].Name, d.Where(tomlpos.Elem(tomlpos.Elem("container", j)+".ports", a))), "each host port can be published once"))
			}
		}
		if a, b, ok := overlap(c.Ports, c.Ports); ok && a != b {
			l.add(d.ErrAt(tomlpos.Elem(p+".ports", b), false, fmt.Sprintf("host port %s is published twice in this container", c.Ports[b]), "remove one of them"))
		}
		if c.Health != nil && c.Health.Command != nil && len(c.Health.Command) == 0 { // nil: reported missing
			l.add(d.ErrAt(p+".health.command", false, "must not be empty", `give the check's command, e.g. ["curl", "-fsS", "http://localhost/"]`))
		}
		targets := map[string]string{} // mount target -> key path
		claim := func(target, key string) {
			if other, dup := targets[target]; dup {
				l.add(d.ErrAt(key, false, fmt.Sprintf("%s is already mounted by %s (%s)", target, other, d.Where(other)), "mount each path once"))
				return
			}
			targets[target] = key
		}
		for j, v := range c.Volumes {
			if v.Target != "" { // "" failed to decode
				claim(v.Target, tomlpos.Elem(p+".volumes", j))
			}
		}
		for j := range c.Files {
			f, fp := &c.Files[j], tomlpos.Elem(p+".file", j)
			if f.Source != "" {
				l.readData(d, fp+".source", f)
			}
			if f.Target == "" {
				continue
			}
			if !isCleanAbs(f.Target) || f.Target == "/" {
				l.add(d.ErrAt(fp+".target", false, fmt.Sprintf("%q is not an absolute file path", f.Target), `write where the file appears in the container, e.g. "/etc/app/app.conf"`))
				continue
			}
			claim(f.Target, fp+".target")
		}
	}
}

// overlap finds the first port of b that shares a host port with a port of a (a different
// index when a and b are the same list).
func overlap(a, b []Port) (int, int, bool) {
	same := len(a) > 0 && len(b) > 0 && &a[0] == &b[0]
	for j := range b {
		for i := range a {
			if same && i >= j {
				break
			}
			if a[i].Overlaps(b[j]) {
				return i, j, true
			}
		}
	}
	return 0, 0, false
}

// validateHosts runs the checks that span host files, or need site.toml or the roles; what a
// host file alone can get wrong was found when it was parsed.
func (l *loader) validateHosts() {
	type seen struct {
		doc  *tomlpos.Document
		path string
		name string
	}
	n := len(l.hosts)
	names, macs, ips := make(map[string]seen, n), make(map[MAC]seen, n), make(map[netip.Addr]seen, n)
	net := &l.site.Network
	for _, e := range l.hosts {
		h, d := e.host, e.doc
		namePath := ""
		if e.parsed.named {
			namePath = "name"
		}
		if s, dup := names[h.Name]; dup {
			err := d.ErrAt(namePath, false, fmt.Sprintf("host name %q is already used by %s", h.Name, s.doc.Where(s.path)), "every host needs its own name")
			if namePath == "" {
				err.Line, err.Column = 1, 1
			}
			l.add(err)
		} else {
			names[h.Name] = seen{d, namePath, h.Name}
		}
		if !h.MAC.IsZero() {
			if s, dup := macs[h.MAC]; dup {
				l.add(d.ErrAt("mac", false, fmt.Sprintf("MAC %s is already used by host %q (%s)", h.MAC, s.name, s.doc.Where(s.path)), "every host needs its own MAC"))
			} else {
				macs[h.MAC] = seen{d, "mac", h.Name}
			}
		}
		if h.IP.IsValid() && l.usable(d, "ip", h.IP) {
			switch {
			case h.IP == net.ApplianceIP:
				l.add(d.ErrAt("ip", false, fmt.Sprintf("%s is the appliance's own address", h.IP), "pick another address"))
			case h.IP == net.Gateway:
				l.add(d.ErrAt("ip", false, fmt.Sprintf("%s is the gateway's address", h.IP), "pick another address"))
			case net.DHCP == "full" && net.DHCPRange.Contains(h.IP):
				l.add(d.ErrAt("ip", false, fmt.Sprintf("%s is inside network.dhcp_range %s-%s", h.IP, net.DHCPRange.Start, net.DHCPRange.End),
					"fixed addresses must lie outside the range leased to unknown machines"))
			default:
				if s, dup := ips[h.IP]; dup {
					l.add(d.ErrAt("ip", false, fmt.Sprintf("%s is already used by host %q (%s)", h.IP, s.name, s.doc.Where(s.path)), "every host needs its own address"))
				} else {
					ips[h.IP] = seen{d, "ip", h.Name}
				}
			}
		}
		if h.OS == "" && l.site.Defaults.OS == "" && l.siteDoc != nil {
			l.add(fileError(h.File, "no OS image for this host", `set os = "..." here, or os in [defaults] of site.toml`))
		}
		if h.Disk == "" && l.site.Defaults.Disk == "" && l.siteDoc != nil {
			l.add(fileError(h.File, "no target disk for this host", `set disk = "first-nonremovable" (or a device path) here, or disk in [defaults] of site.toml`))
		}
		l.validateHostRoles(d, h)
	}
}

func checkPartitions(d *tomlpos.Document, h *Host) (errs []*Error) {
	labels, mounts := map[string]int{}, map[string]int{}
	for i, p := range h.Partitions {
		pp := tomlpos.Elem("partition", i)
		if p.Size == 0 && i != len(h.Partitions)-1 {
			errs = append(errs, d.ErrAt(pp, true, "only the last partition may leave out size", `give a size such as "20GiB"`))
		}
		if j, dup := labels[p.Label]; dup && p.Label != "" {
			errs = append(errs, d.ErrAt(pp+".label", false, fmt.Sprintf("label %q is already used by %s", p.Label, d.Where(tomlpos.Elem("partition", j)+".label")), "partition labels must be unique"))
		}
		labels[p.Label] = i
		if p.Mount == "" {
			continue
		}
		switch {
		case p.Filesystem == "swap" || p.Filesystem == "none":
			errs = append(errs, d.ErrAt(pp+".mount", false, fmt.Sprintf("a %s partition has no mount point", p.Filesystem), "remove mount"))
		case !isCleanAbs(p.Mount) || p.Mount == "/":
			errs = append(errs, d.ErrAt(pp+".mount", false, fmt.Sprintf("%q is not a mount point", p.Mount), `write an absolute path other than "/", e.g. "/var/lib/data"`))
		default:
			if j, dup := mounts[p.Mount]; dup {
				errs = append(errs, d.ErrAt(pp+".mount", false, fmt.Sprintf("%s is already mounted by %s", p.Mount, d.Where(tomlpos.Elem("partition", j)+".mount")), "mount each path once"))
			}
			mounts[p.Mount] = i
		}
	}
	return errs
}

// validateHostRoles checks what only the combination of a host's roles can get wrong: unknown
// roles, and two roles that put containers of the same name, or the same host port, on it.
//
// Hosts share a few combinations of roles: one found faultless is not checked again.
func (l *loader) validateHostRoles(d *tomlpos.Document, h *Host) {
	key := strings.Join(h.Roles, "\x00")
	if l.rolesOK[key] {
		return
	}
	before := len(l.errs)
	defer func() {
		if len(l.errs) == before {
			if l.rolesOK == nil {
				l.rolesOK = map[string]bool{}
			}
			l.rolesOK[key] = true
		}
	}()
	type placed struct {
		role string
		c    *Container
	}
	var byName = map[string]placed{}
	var all []placed
	for i, name := range h.Roles {
		rp := tomlpos.Elem("roles", i)
		if slices.Index(h.Roles, name) < i {
			l.add(d.ErrAt(rp, false, fmt.Sprintf("role %q is listed twice", name), "remove one"))
			continue
		}
		r, ok := l.site.Roles[name]
		if !ok {
			hint := fmt.Sprintf("create roles/%s.toml or remove the role from this host", name)
			if c := tomlpos.Closest(name, tomlpos.SortedKeys(l.site.Roles)); c != "" {
				hint = fmt.Sprintf("did you mean %q?", c)
			}
			l.add(d.ErrAt(rp, false, fmt.Sprintf("unknown role %q (no file roles/%s.toml)", name, name), hint))
			continue
		}
		for j := range r.Containers {
			c := &r.Containers[j]
			if other, dup := byName[c.Name]; dup && c.Name != "" {
				l.add(d.ErrAt(rp, false, fmt.Sprintf("roles %q and %q both define container %q", other.role, name, c.Name),
					"container names must be unique on a host: rename one of them"))
				continue
			}
			byName[c.Name] = placed{name, c}
			for _, o := range all {
				if o.role == name {
					continue // checked in the role itself
				}
				if _, b, ok := overlap(o.c.Ports, c.Ports); ok {
					l.add(d.ErrAt(rp, false, fmt.Sprintf("container %q of role %q and container %q of role %q both publish host port %s", o.c.Name, o.role, c.Name, name, c.Ports[b]),
						"change the host port in one of the roles"))
				}
			}
			all = append(all, placed{name, c})
		}
	}
}

// applyDefaults fills in what the site leaves to defaults, once the site is known to be valid.
// A host file parsed by an earlier valid load whose defaults were prev, as they still are,
// gives the host that load made.
func (l *loader) applyDefaults(prev *Defaults) {
	s := l.site
	if s.Defaults.Timezone == "" {
		s.Defaults.Timezone = "UTC"
	}
	same := prev != nil && reflect.DeepEqual(*prev, s.Defaults)
	s.Hosts = make([]*Host, 0, len(l.hosts))
	for _, e := range l.hosts {
		if same && e.parsed.final != nil { // a file parsed again has no final yet
			s.Hosts = append(s.Hosts, e.parsed.final)
			continue
		}
		copied := *e.host
		h := &copied
		h.Partitions = slices.Clone(h.Partitions)
		h.OS = cmp.Or(h.OS, s.Defaults.OS)
		h.Disk = cmp.Or(h.Disk, s.Defaults.Disk)
		h.Timezone = cmp.Or(h.Timezone, s.Defaults.Timezone)
		keys := slices.Concat(s.Defaults.SSHAuthorizedKeys, h.SSHAuthorizedKeys)
		h.SSHAuthorizedKeys = dedupe(keys)
		for i := range h.Partitions {
			h.Partitions[i].Filesystem = cmp.Or(h.Partitions[i].Filesystem, "ext4")
		}
		e.parsed.final = h
		s.Hosts = append(s.Hosts, h)
	}
	slices.SortFunc(s.Hosts, func(a, b *Host) int { return strings.Compare(a.Name, b.Name) })
	for _, r := range s.Roles {
		for i := range r.Containers {
			c := &r.Containers[i]
			c.Network = cmp.Or(c.Network, "bridge")
			c.Restart = cmp.Or(c.Restart, "always")
			if hc := c.Health; hc != nil {
				hc.Interval = cmp.Or(hc.Interval, Duration(30*time.Second))
				hc.Timeout = cmp.Or(hc.Timeout, Duration(10*time.Second))
				hc.Retries = cmp.Or(hc.Retries, 3)
			}
		}
	}
}

// dedupe drops repeated strings, keeping the first of each.
func dedupe(ss []string) []string {
	out := ss[:0:0]
	for _, s := range ss {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
