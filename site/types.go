package site

import (
	"fmt"
	"net"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-appliance/cairn/site/tomlpos"

	"github.com/distribution/reference"
)

// The value types below decode themselves from TOML strings. Their errors say what was expected
// and how to fix it; the loader adds file, line, column and key. Each also describes itself in
// the JSON Schema.

// MAC is a unicast Ethernet address, written in TOML as "52:54:00:12:34:56". It is the one
// form in which cairn compares MACs (the site, plans, the state, DHCP): as a value, or as the
// canonical string String returns. Turn any other form into one with ParseMAC or MACOf.
type MAC [6]byte

// String returns the canonical lowercase, colon-separated form.
func (m MAC) String() string { return net.HardwareAddr(m[:]).String() }

// ParseMAC reads a 6-byte MAC in any form net.ParseMAC accepts ("52:54:00:AB:CD:EF",
// "52-54-00-ab-cd-ef", "5254.00ab.cdef"). Unlike a site file's mac key it takes any address, so
// that what a machine reports can always be compared.
func ParseMAC(s string) (MAC, error) {
	hw, err := net.ParseMAC(s)
	if err != nil {
		return MAC{}, err
	}
	m, ok := MACOf(hw)
	if !ok {
		return MAC{}, fmt.Errorf("%q is not a 6-byte Ethernet address", s)
	}
	return m, nil
}

// MACOf returns hw as a MAC, false when it is not 6 bytes long (InfiniBand's 20-byte addresses).
func MACOf(hw net.HardwareAddr) (MAC, bool) {
	var m MAC
	if len(hw) != len(m) {
		return m, false
	}
	copy(m[:], hw)
	return m, true
}

// IsZero reports whether m is unset.
func (m MAC) IsZero() bool { return m == MAC{} }

// MarshalText implements encoding.TextMarshaler.
func (m MAC) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *MAC) UnmarshalText(b []byte) error {
	const hint = `write six hex pairs separated by colons, e.g. "52:54:00:12:34:56"`
	hw, err := net.ParseMAC(string(b))
	if err != nil || len(hw) != 6 {
		return tomlpos.Invalid(hint, "expected a MAC address, got %q", b)
	}
	copy(m[:], hw)
	switch {
	case m.IsZero():
		return tomlpos.Invalid("use the MAC of the host's PXE network card", "%q is the null MAC address", b)
	case m[0]&1 == 1:
		return tomlpos.Invalid("use the MAC of the host's PXE network card", "%q is a multicast address, not a network card's", b)
	}
	return nil
}

// JSONSchema implements tomlpos.Schemaer.
func (MAC) JSONSchema() map[string]any {
	return map[string]any{"type": "string", "pattern": `^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$`}
}

// Disk names the disk an OS image is written to: a device path under /dev (prefer the stable
// /dev/disk/by-id/... or /dev/disk/by-path/... names) or a selector that the agent resolves from
// the host's inventory.
type Disk string

// Disk selectors.
const (
	DiskFirstNonRemovable = "first-nonremovable" // the first non-removable disk in kernel order
	DiskLargest           = "largest"            // the largest non-removable disk
	DiskSmallest          = "smallest"           // the smallest non-removable disk
)

var diskPrefixes = []string{"serial:", "wwn:", "model:"}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Disk) UnmarshalText(b []byte) error {
	s := string(b)
	const hint = `use a path such as "/dev/disk/by-id/..." or "/dev/sda", one of "first-nonremovable", "largest", "smallest", or "serial:<serial>", "wwn:<wwn>", "model:<model>"`
	switch {
	case strings.HasPrefix(s, "/dev/"):
		if strings.Contains(s, "..") || strings.ContainsAny(s, " \t\n") || strings.HasSuffix(s, "/") {
			return tomlpos.Invalid(hint, "expected a device path, got %q", s)
		}
	case s == DiskFirstNonRemovable || s == DiskLargest || s == DiskSmallest:
	default:
		ok := false
		for _, p := range diskPrefixes {
			if v, found := strings.CutPrefix(s, p); found && strings.TrimSpace(v) != "" {
				ok = true
			}
		}
		if !ok {
			return tomlpos.Invalid(hint, "expected a disk path or selector, got %q", s)
		}
	}
	*d = Disk(s)
	return nil
}

// JSONSchema implements tomlpos.Schemaer.
func (Disk) JSONSchema() map[string]any {
	return map[string]any{"type": "string", "anyOf": []any{
		map[string]any{"pattern": "^/dev/[^ ]+$"},
		map[string]any{"enum": []any{DiskFirstNonRemovable, DiskLargest, DiskSmallest}},
		map[string]any{"pattern": "^(serial|wwn|model):.+$"},
	}}
}

// Size is a number of bytes, written as "20GiB", "512MiB" or "1TB".
type Size uint64

var sizeUnits = []struct {
	suffix string
	factor uint64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (z *Size) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	const hint = `write a whole number and a unit: B, KiB, MiB, GiB, TiB (or KB, MB, GB, TB), e.g. "20GiB"`
	for _, u := range sizeUnits {
		num, ok := strings.CutSuffix(s, u.suffix)
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(num), 10, 64)
		if err != nil || n == 0 || n > (1<<64-1)/u.factor {
			return tomlpos.Invalid(hint, "expected a size, got %q", b)
		}
		*z = Size(n * u.factor)
		return nil
	}
	return tomlpos.Invalid(hint, "expected a size with a unit, got %q", b)
}

// String formats the size with the largest binary unit that divides it.
func (z Size) String() string {
	for _, u := range []struct {
		suffix string
		factor uint64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if uint64(z) >= u.factor && uint64(z)%u.factor == 0 {
			return strconv.FormatUint(uint64(z)/u.factor, 10) + u.suffix
		}
	}
	return strconv.FormatUint(uint64(z), 10) + "B"
}

// MarshalText implements encoding.TextMarshaler.
func (z Size) MarshalText() ([]byte, error) { return []byte(z.String()), nil }

// JSONSchema implements tomlpos.Schemaer.
func (Size) JSONSchema() map[string]any {
	return map[string]any{"type": "string", "pattern": `^\s*[0-9]+\s*(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB)\s*$`}
}

// Duration is a positive time span written as Go writes durations: "30s", "1m30s", "500ms".
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil || v <= 0 {
		return tomlpos.Invalid(`write a number and a unit (ms, s, m, h), e.g. "30s" or "1m30s"`, "expected a positive duration, got %q", b)
	}
	*d = Duration(v)
	return nil
}

// String formats the duration as Go does ("1m30s").
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// JSONSchema implements tomlpos.Schemaer.
func (Duration) JSONSchema() map[string]any {
	return map[string]any{"type": "string", "pattern": `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`}
}

// Image is a container image reference, normalized the way Docker and Podman do it:
// "nginx:1.27" is docker.io/library/nginx:1.27, and a reference without tag or digest means
// the tag "latest".
type Image struct {
	Name   string // repository with its registry: docker.io/library/nginx
	Tag    string // may be empty when Digest is set
	Digest string // sha256:..., or empty
}

// String returns the normalized reference.
func (i Image) String() string {
	s := i.Name
	if i.Tag != "" {
		s += ":" + i.Tag
	}
	if i.Digest != "" {
		s += "@" + i.Digest
	}
	return s
}

// IsZero reports whether i is unset.
func (i Image) IsZero() bool { return i == Image{} }

// MarshalText implements encoding.TextMarshaler.
func (i Image) MarshalText() ([]byte, error) { return []byte(i.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (i *Image) UnmarshalText(b []byte) error {
	const hint = `write REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST] in lowercase, e.g. "docker.io/library/nginx:1.27"`
	named, err := reference.ParseNormalizedNamed(string(b))
	if err != nil {
		return tomlpos.Invalid(hint, "expected an image reference, got %q (%v)", b, err)
	}
	named = reference.TagNameOnly(named)
	img := Image{Name: named.Name()}
	if t, ok := named.(reference.Tagged); ok {
		img.Tag = t.Tag()
	}
	if d, ok := named.(reference.Digested); ok {
		img.Digest = d.Digest().String()
	}
	*i = img
	return nil
}

// JSONSchema implements tomlpos.Schemaer.
func (Image) JSONSchema() map[string]any {
	return map[string]any{"type": "string", "minLength": 1, "pattern": `^[a-z0-9]`}
}

// Port is a published port or port range: [IP:]HOST:CONTAINER[/PROTOCOL].
type Port struct {
	HostIP         netip.Addr // unset: all addresses
	HostStart      uint16
	HostEnd        uint16 // equal to HostStart for a single port
	ContainerStart uint16
	ContainerEnd   uint16
	Protocol       string // tcp, udp or sctp
}

// String returns the canonical form.
func (p Port) String() string {
	r := func(a, b uint16) string {
		if a == b {
			return strconv.Itoa(int(a))
		}
		return fmt.Sprintf("%d-%d", a, b)
	}
	s := r(p.HostStart, p.HostEnd) + ":" + r(p.ContainerStart, p.ContainerEnd) + "/" + p.Protocol
	if p.HostIP.IsValid() {
		ip := p.HostIP.String()
		if p.HostIP.Is6() {
			ip = "[" + ip + "]"
		}
		s = ip + ":" + s
	}
	return s
}

// Overlaps reports whether p and q publish a common host port of the same protocol on a common
// address. A zero Port overlaps nothing.
func (p Port) Overlaps(q Port) bool {
	if p.Protocol == "" || p.Protocol != q.Protocol || p.HostEnd < q.HostStart || q.HostEnd < p.HostStart {
		return false
	}
	return !p.HostIP.IsValid() || !q.HostIP.IsValid() || p.HostIP == q.HostIP
}

// MarshalText implements encoding.TextMarshaler.
func (p Port) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Port) UnmarshalText(b []byte) error {
	s := string(b)
	const hint = `write [IP:]HOST:CONTAINER[/tcp|udp|sctp], e.g. "8080:80" or "127.0.0.1:53:53/udp"`
	bad := func(why string) error { return tomlpos.Invalid(hint, "expected a port mapping, got %q (%s)", s, why) }
	rest, proto, found := strings.Cut(s, "/")
	if !found {
		proto = "tcp"
	}
	if proto != "tcp" && proto != "udp" && proto != "sctp" {
		return bad("protocol must be tcp, udp or sctp")
	}
	var q Port
	q.Protocol = proto
	if strings.HasPrefix(rest, "[") { // [IPv6]:HOST:CONTAINER
		end := strings.Index(rest, "]:")
		if end < 0 {
			return bad("unclosed [ of an IPv6 address")
		}
		ip, err := netip.ParseAddr(rest[1:end])
		if err != nil {
			return bad("not an IP address: " + rest[1:end])
		}
		q.HostIP, rest = ip, rest[end+2:]
	}
	parts := strings.Split(rest, ":")
	switch len(parts) {
	case 2:
	case 3:
		if q.HostIP.IsValid() {
			return bad("too many colons")
		}
		ip, err := netip.ParseAddr(parts[0])
		if err != nil {
			return bad("not an IP address: " + parts[0])
		}
		q.HostIP, parts = ip, parts[1:]
	default:
		return bad("both the host port and the container port are needed")
	}
	var err error
	if q.HostStart, q.HostEnd, err = portRange(parts[0]); err != nil {
		return bad("host port: " + err.Error())
	}
	if q.ContainerStart, q.ContainerEnd, err = portRange(parts[1]); err != nil {
		return bad("container port: " + err.Error())
	}
	if q.HostEnd-q.HostStart != q.ContainerEnd-q.ContainerStart {
		return bad("the host and container ranges differ in length")
	}
	*p = q
	return nil
}

func portRange(s string) (lo, hi uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if lo, err = portNumber(a); err != nil {
		return 0, 0, err
	}
	hi = lo
	if isRange {
		if hi, err = portNumber(b); err != nil {
			return 0, 0, err
		}
		if hi < lo {
			return 0, 0, fmt.Errorf("range %s runs backwards", s)
		}
	}
	return lo, hi, nil
}

func portNumber(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port from 1 to 65535", s)
	}
	return uint16(n), nil
}

// JSONSchema implements tomlpos.Schemaer.
func (Port) JSONSchema() map[string]any {
	return map[string]any{"type": "string", "pattern": `^(\[[0-9A-Fa-f:.]+\]:|[0-9.]+:)?[0-9]+(-[0-9]+)?:[0-9]+(-[0-9]+)?(/(tcp|udp|sctp))?$`}
}

// Volume is a mount into a container: a host path or a named volume, a container path, options.
type Volume struct {
	Source  string   // absolute host path, or a volume name
	Target  string   // absolute path in the container
	Options []string // e.g. ro, z
}

// Named reports whether the source is a named volume rather than a host path.
func (v Volume) Named() bool { return !strings.HasPrefix(v.Source, "/") }

// String returns the canonical SOURCE:TARGET[:OPTIONS] form.
func (v Volume) String() string {
	s := v.Source + ":" + v.Target
	if len(v.Options) > 0 {
		s += ":" + strings.Join(v.Options, ",")
	}
	return s
}

// MarshalText implements encoding.TextMarshaler.
func (v Volume) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

var (
	volumeName    = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
	volumeOptions = []string{"ro", "rw", "z", "Z", "U", "noexec", "exec", "nosuid", "suid", "nodev", "dev",
		"rbind", "bind", "shared", "rshared", "slave", "rslave", "private", "rprivate", "copy", "nocopy"}
)

// UnmarshalText implements encoding.TextUnmarshaler.
func (v *Volume) UnmarshalText(b []byte) error {
	s := string(b)
	const hint = `write /host/path:/container/path[:ro] or volume-name:/container/path[:ro]`
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return tomlpos.Invalid(hint, "expected a volume, got %q", s)
	}
	q := Volume{Source: parts[0], Target: parts[1]}
	switch {
	case strings.HasPrefix(q.Source, "/"):
		if !isCleanAbs(q.Source) {
			return tomlpos.Invalid(hint, "volume %q: host path %q is not a clean absolute path", s, q.Source)
		}
	case !volumeName.MatchString(q.Source):
		return tomlpos.Invalid(hint, "volume %q: %q is neither an absolute host path nor a volume name", s, q.Source)
	}
	if !isCleanAbs(q.Target) {
		return tomlpos.Invalid(hint, "volume %q: container path %q is not a clean absolute path", s, q.Target)
	}
	if len(parts) == 3 {
		q.Options = strings.Split(parts[2], ",")
		for _, o := range q.Options {
			if !slices.Contains(volumeOptions, o) {
				return tomlpos.Invalid("options are "+strings.Join(volumeOptions, ", "), "volume %q: unknown option %q", s, o)
			}
		}
		if slices.Contains(q.Options, "ro") && slices.Contains(q.Options, "rw") {
			return tomlpos.Invalid("choose one of ro and rw", "volume %q is both ro and rw", s)
		}
	}
	*v = q
	return nil
}

// JSONSchema implements tomlpos.Schemaer.
func (Volume) JSONSchema() map[string]any {
	return map[string]any{"type": "string", "pattern": `^[^:]+:/[^:]*(:[A-Za-z,]+)?$`}
}

// isCleanAbs reports whether p is an absolute slash path with no . or .. elements.
func isCleanAbs(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\x00\n") {
		return false
	}
	return p == "/" || path.Clean(p) == p
}
