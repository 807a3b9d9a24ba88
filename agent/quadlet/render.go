package quadlet

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/distribution/reference"

	"github.com/cairn-appliance/cairn/agent/api"
)

// OwnerLabel marks every container cairn creates, with the value OwnerValue.
const OwnerLabel = "io.cairn.owner"

// The other labels of a container cairn creates.
const (
	OwnerValue     = "cairn"
	RoleLabel      = "io.cairn.role"      // the role the container comes from
	ContainerLabel = "io.cairn.container" // the site's name of the container
)

// ConfigHashEnv is the environment variable that carries the hash of a container's files
// (ConfigHash), so that a change of content changes the unit and restarts the container.
const ConfigHashEnv = "CAIRN_CONFIG_HASH"

// UnitPrefix starts the name of every unit cairn writes: a container named like a host's
// own service (ssh, cron, dbus) must not shadow it, since generated units take precedence
// over the distribution's.
const UnitPrefix = "cairn-"

// Layout is where the files go on the host.
type Layout struct {
	UnitDir   string // the directory quadlet reads cairn's units from: /etc/containers/systemd/cairn
	ConfigDir string // the root of config files mounted into containers: /var/lib/cairn/config
}

// DefaultLayout is the layout of a cairn host.
func DefaultLayout() Layout {
	return Layout{UnitDir: "/etc/containers/systemd/cairn", ConfigDir: "/var/lib/cairn/config"}
}

// RegistriesConfPath is where Rendered.RegistriesConf goes on the host.
const RegistriesConfPath = "/etc/containers/registries.conf.d/50-cairn.conf"

// Unit is one quadlet unit file.
type Unit struct {
	Name      string // file name, e.g. cairn-web.container (UnitName)
	Container string // the site's container name
	Service   string // the systemd unit quadlet makes of it: cairn-web.service (ServiceName)
	Data      []byte
	// ConfigDir is the container's directory of config files under Layout.ConfigDir, "" when
	// it has none. It is named by the files' hash, so a directory no unit names is stale.
	ConfigDir string
}

// Config is one file mounted into a container. The host agent writes it with mode 0644 in
// directories of mode 0755: a container may run as any user, and it mounts the file as is.
type Config struct {
	Path string // absolute path on the host, under Layout.ConfigDir
	Data []byte
}

// Rendered is everything a host gets for its Desired.
type Rendered struct {
	Units          []Unit   // sorted by Name
	Configs        []Config // sorted by Path
	RegistriesConf []byte   // containers-registries.conf(5) content for RegistriesConfPath
}

// UnitName is the file name of the unit of the container named container.
func UnitName(container string) string { return UnitPrefix + container + ".container" }

// ServiceName is the systemd service quadlet makes of the container named container.
func ServiceName(container string) string { return UnitPrefix + container + ".service" }

// FieldError is a container field Render cannot turn into a unit safely.
type FieldError struct {
	Container string // the container's name, "" for a field of the Desired itself
	Field     string // as in the agent API's JSON: env["A"], files[1].target, registry
	Problem   string
}

func (e *FieldError) Error() string {
	if e.Container == "" {
		return fmt.Sprintf("quadlet: %s: %s", e.Field, e.Problem)
	}
	return fmt.Sprintf("quadlet: container %q: %s: %s", e.Container, e.Field, e.Problem)
}

// Render turns a host's desired containers into quadlet units, the config files they mount and
// the registries.conf drop-in that sends every image name to the appliance's registry.
//
// The output is a function of the containers alone, not of d.Generation nor of their order: a
// unit's bytes change exactly when its own container's desired state does, so that only those
// containers restart. Anything that cannot be rendered safely is refused with FieldErrors
// (joined), one per field, and nothing is returned.
func Render(d *api.Desired, l Layout) (*Rendered, error) {
	var errs []error
	if err := l.check(); err != nil {
		return nil, err
	}
	if len(d.Containers) > 0 && !registryRe.MatchString(d.Registry) {
		errs = append(errs, &FieldError{Field: "registry", Problem: fmt.Sprintf("%q is not a registry address (host or host:port, no scheme or path)", d.Registry)})
	}
	cs := slices.Clone(d.Containers)
	slices.SortStableFunc(cs, func(a, b api.Container) int { return strings.Compare(a.Name, b.Name) })
	r := &Rendered{}
	domains := map[string]bool{}
	for i := range cs {
		c := &cs[i]
		if i > 0 && cs[i-1].Name == c.Name {
			errs = append(errs, &FieldError{Container: c.Name, Field: "name", Problem: "two containers of the host have this name; each needs its own"})
			continue
		}
		u, configs, domain, err := renderContainer(c, l)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.Units = append(r.Units, u)
		r.Configs = append(r.Configs, configs...)
		domains[domain] = true
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.SortFunc(r.Configs, func(a, b Config) int { return strings.Compare(a.Path, b.Path) })
	r.RegistriesConf = registriesConf(d.Registry, slices.Sorted(maps.Keys(domains)))
	return r, nil
}

func (l Layout) check() error {
	for _, f := range []struct{ name, dir string }{{"UnitDir", l.UnitDir}, {"ConfigDir", l.ConfigDir}} {
		if !path.IsAbs(f.dir) || path.Clean(f.dir) != f.dir || f.dir == "/" || !plain(f.dir) || strings.Contains(f.dir, ":") {
			return fmt.Errorf("quadlet: layout %s %q is not a clean absolute directory of plain characters", f.name, f.dir)
		}
	}
	return nil
}

var (
	// nameRe is the site's container name: also a podman container name and, prefixed, a
	// systemd unit name.
	nameRe     = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)
	roleRe     = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)
	envNameRe  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	digestRe   = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	sha256Re   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	registryRe = regexp.MustCompile(`^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)(:[0-9]{1,5})?$`)
	// domainRe is a registry domain that is also a repository path component.
	domainRe = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$`)
	userRe   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$`)
	// portRe is [IP:]HOST:CONTAINER[/PROTOCOL], each port a number or a range.
	portRe       = regexp.MustCompile(`^((\[[0-9a-fA-F:.]+\]|[0-9.]+):)?[0-9]{1,5}(-[0-9]{1,5})?:[0-9]{1,5}(-[0-9]{1,5})?(/(tcp|udp|sctp))?$`)
	volumeNameRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
	volumeOptRe  = regexp.MustCompile(`^[A-Za-z0-9=_.-]+$`)
)

// The restart policies of systemd's Restart=.
var restarts = []string{"no", "always", "on-success", "on-failure", "on-abnormal", "on-abort", "on-watchdog"}

// ConfigHash is the hash that names a container's config files: the first 16 hex digits of
// the sha256 over each file's target, a NUL, its sha256 in hex and a newline, in the order of
// the targets. It depends on the files' paths and contents only.
func ConfigHash(files []api.File) string {
	fs := slices.Clone(files)
	slices.SortFunc(fs, func(a, b api.File) int { return strings.Compare(a.Target, b.Target) })
	h := sha256.New()
	for _, f := range fs {
		fmt.Fprintf(h, "%s\x00%s\n", f.Target, f.SHA256)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Podman's health check defaults, which an unset field of api.Health means.
const (
	defaultHealthInterval = 30 * time.Second
	defaultHealthTimeout  = 30 * time.Second
	defaultHealthRetries  = 3
)

// minStartTimeout bounds a start from below: images are pulled before any start (Pull=never),
// so a start only creates the container and, with a health check, waits for it to turn
// healthy; five minutes leave room for a slow disk.
const minStartTimeout = 5 * time.Minute

// restartDelay is RestartSec=: with systemd's default of 100 ms a crashing container hits
// the start rate limit (5 starts in 10 s) within a second and stays down for good.
const restartDelay = 5 * time.Second

// unit collects a unit's lines and the problems found on the way.
type unit struct {
	c    *api.Container
	b    bytes.Buffer
	errs []error
}

func (u *unit) fail(field, format string, args ...any) {
	u.errs = append(u.errs, &FieldError{Container: u.c.Name, Field: field, Problem: fmt.Sprintf(format, args...)})
}

func (u *unit) line(key, value string) { fmt.Fprintf(&u.b, "%s=%s\n", key, value) }

// text checks a value that goes into the unit: valid UTF-8 and on one line.
func (u *unit) text(field, s string) bool {
	if !utf8.ValidString(s) {
		u.fail(field, "is not valid UTF-8")
		return false
	}
	if i := strings.IndexFunc(s, unicode.IsControl); i >= 0 {
		r, _ := utf8.DecodeRuneInString(s[i:])
		u.fail(field, "contains the control character %q: a unit holds each value on one line; put such content in a file (files) instead", r)
		return false
	}
	return true
}

func renderContainer(c *api.Container, l Layout) (Unit, []Config, string, error) {
	u := &unit{c: c}
	if !nameRe.MatchString(c.Name) {
		u.fail("name", "%q is not a container name: letters, digits, '_', '.' and '-', starting with a letter or digit, at most 63", c.Name)
		return Unit{}, nil, "", errors.Join(u.errs...)
	}
	if !roleRe.MatchString(c.Role) {
		u.fail("role", "%q is not a role name", c.Role)
	}
	name, domain := u.image()
	hash, dir, configs := u.files(l)

	fmt.Fprintf(&u.b, "# Generated by cairn for container %s of role %s. cairn rewrites this file: do not edit it.\n", c.Name, c.Role)
	u.b.WriteString("[Unit]\n")
	u.line("Description", fmt.Sprintf("cairn container %s (role %s)", c.Name, c.Role))

	u.b.WriteString("\n[Container]\n")
	u.line("ContainerName", c.Name)
	u.line("Image", name+"@"+c.Digest)
	// The agent pulls every digest before it starts anything: a start never touches the
	// network, and an image that is missing fails the start instead of fetching it.
	u.line("Pull", "never")
	u.line("Label", OwnerLabel+"="+OwnerValue)
	u.line("Label", RoleLabel+"="+c.Role)
	u.line("Label", ContainerLabel+"="+c.Name)
	u.entrypoint()
	u.command()
	u.env(hash)
	u.network()
	u.ports()
	u.volumes(dir, configs)
	u.user()
	health := u.health()

	u.b.WriteString("\n[Service]\n")
	u.restart()
	u.line("RestartSec", strconv.Itoa(int(restartDelay/time.Second)))
	u.line("TimeoutStartSec", strconv.Itoa(int(startTimeout(health)/time.Second)))

	u.b.WriteString("\n[Install]\n")
	u.line("WantedBy", "multi-user.target")

	if len(u.errs) > 0 {
		return Unit{}, nil, "", errors.Join(u.errs...)
	}
	return Unit{Name: UnitName(c.Name), Container: c.Name, Service: ServiceName(c.Name), Data: u.b.Bytes(), ConfigDir: dir}, configs, domain, nil
}

// image checks Image and Digest and returns the image's name without tag or digest, and its
// registry's domain.
func (u *unit) image() (name, domain string) {
	c := u.c
	if !digestRe.MatchString(c.Digest) {
		u.fail("digest", "%q is not a sha256 digest (sha256: and 64 lowercase hex digits)", c.Digest)
	}
	ref, err := reference.ParseNormalizedNamed(c.Image)
	if err != nil {
		u.fail("image", "%q is not an image reference: %v", c.Image, err)
		return "", ""
	}
	if d, ok := ref.(reference.Digested); ok && d.Digest().String() != c.Digest {
		u.fail("image", "%q names digest %s, but the container's digest is %s", c.Image, d.Digest(), c.Digest)
	}
	domain = reference.Domain(ref)
	if !domainRe.MatchString(domain) {
		// The appliance serves an image under its full name (registry.example.com/tools/x);
		// a port or upper case cannot be part of a repository's name.
		u.fail("image", "%q comes from registry %s, which cannot be part of a repository name in the appliance's registry (no port, lower case only)", c.Image, domain)
	}
	return ref.Name(), domain
}

// files checks the container's files and lays them out under the container's directory.
func (u *unit) files(l Layout) (hash, dir string, configs []Config) {
	if len(u.c.Files) == 0 {
		return "", "", nil
	}
	ok := true
	targets := map[string]bool{}
	for i, f := range u.c.Files {
		field := fmt.Sprintf("files[%d]", i)
		switch {
		case !path.IsAbs(f.Target) || path.Clean(f.Target) != f.Target || f.Target == "/":
			u.fail(field+".target", "%q is not a clean absolute path in the container", f.Target)
			ok = false
		case !plain(f.Target) || strings.Contains(f.Target, ":"):
			u.fail(field+".target", "%q has a character a mount cannot carry (whitespace, control, quote, backslash, ':', '$' or '%%')", f.Target)
			ok = false
		case targets[f.Target]:
			u.fail(field+".target", "%s is the target of another file too", f.Target)
			ok = false
		}
		targets[f.Target] = true
		sum := sha256.Sum256(f.Data)
		if !sha256Re.MatchString(f.SHA256) || f.SHA256 != hex.EncodeToString(sum[:]) {
			u.fail(field+".sha256", "%q is not the sha256 of the file's %d bytes (%x)", f.SHA256, len(f.Data), sum)
			ok = false
		}
	}
	if !ok {
		return "", "", nil
	}
	hash = ConfigHash(u.c.Files)
	dir = path.Join(l.ConfigDir, u.c.Name+"-"+hash)
	for _, f := range u.c.Files {
		configs = append(configs, Config{Path: path.Join(dir, f.Target), Data: f.Data})
	}
	slices.SortFunc(configs, func(a, b Config) int { return strings.Compare(a.Path, b.Path) })
	return hash, dir, configs
}

// entrypoint writes Entrypoint= as a JSON array, which podman reads as the exact argument
// list (a plain string would be one single argument).
func (u *unit) entrypoint() {
	if len(u.c.Entrypoint) == 0 {
		return
	}
	for i, a := range u.c.Entrypoint {
		if !u.text(fmt.Sprintf("entrypoint[%d]", i), a) {
			return
		}
	}
	u.line("Entrypoint", raw(jsonArray(u.c.Entrypoint)))
}

// command writes Exec=, whose words quadlet splits like systemd does a command line.
func (u *unit) command() {
	if len(u.c.Command) == 0 {
		return
	}
	words := make([]string, len(u.c.Command))
	for i, a := range u.c.Command {
		field := fmt.Sprintf("command[%d]", i)
		if !u.text(field, a) {
			return
		}
		switch a {
		case "":
			// quadlet's splitter ends the command at an empty word.
			u.fail(field, "is empty: quadlet cannot pass an empty argument; wrap the command in [\"/bin/sh\", \"-c\", ...] if it needs one")
			return
		case ";":
			// quadlet writes a lone ';' unquoted into ExecStart=, where systemd reads it as
			// the end of the command.
			u.fail(field, "is a lone ';', which systemd reads as the end of the command; wrap the command in [\"/bin/sh\", \"-c\", ...]")
			return
		}
		words[i] = word(a)
	}
	u.line("Exec", strings.Join(words, " "))
}

// env writes one Environment= per variable, sorted by name.
func (u *unit) env(hash string) {
	env := maps.Clone(u.c.Env)
	if _, ok := env[ConfigHashEnv]; ok {
		u.fail(fmt.Sprintf("env[%q]", ConfigHashEnv), "is set by cairn itself (the hash of the container's files); use another name")
		return
	}
	if hash != "" {
		if env == nil {
			env = map[string]string{}
		}
		env[ConfigHashEnv] = hash
	}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		field := fmt.Sprintf("env[%q]", k)
		if !envNameRe.MatchString(k) {
			u.fail(field, "%q is not an environment variable name: letters, digits and '_', not starting with a digit", k)
			continue
		}
		if u.text(field, env[k]) {
			u.line("Environment", word(k+"="+env[k]))
		}
	}
}

func (u *unit) network() {
	switch u.c.Network {
	case "", "bridge": // podman's default network
	case "host", "none":
		u.line("Network", u.c.Network)
	default:
		u.fail("network", "%q is not a network: bridge, host or none", u.c.Network)
	}
}

func (u *unit) ports() {
	for i, p := range u.c.Ports {
		field := fmt.Sprintf("ports[%d]", i)
		switch {
		case !portRe.MatchString(p):
			u.fail(field, "%q is not a port: [IP:]HOST:CONTAINER[/tcp|udp|sctp], ranges as 8000-8009", p)
		case u.c.Network == "host" || u.c.Network == "none":
			u.fail(field, "publishes a port with network %q: only the bridge network publishes ports", u.c.Network)
		default:
			u.line("PublishPort", p)
		}
	}
}

// volumes writes the container's own volumes, then one read-only mount per config file.
//
// Volume= values reach podman's command line and RequiresMountsFor= (a space-separated list)
// as they are, unquoted: they are held to characters that need no quoting anywhere.
func (u *unit) volumes(dir string, configs []Config) {
	for i, v := range u.c.Volumes {
		field := fmt.Sprintf("volumes[%d]", i)
		parts := strings.Split(v, ":")
		if len(parts) < 2 || len(parts) > 3 || !plain(v) {
			u.fail(field, "%q is not SOURCE:TARGET[:OPTIONS] of plain characters (no whitespace, quotes, backslash, '$' or '%%')", v)
			continue
		}
		src, dst := parts[0], parts[1]
		switch {
		case strings.HasPrefix(src, "/"):
			if path.Clean(src) != src {
				u.fail(field, "host path %q is not clean", src)
				continue
			}
		case !volumeNameRe.MatchString(src):
			u.fail(field, "source %q is neither an absolute host path nor a volume name", src)
			continue
		case strings.HasSuffix(src, ".volume") || strings.HasSuffix(src, ".image"):
			u.fail(field, "volume name %q ends like a quadlet unit, which quadlet would look for instead of a volume; rename it", src)
			continue
		}
		if !path.IsAbs(dst) || path.Clean(dst) != dst {
			u.fail(field, "target %q is not a clean absolute path", dst)
			continue
		}
		if len(parts) == 3 && slices.ContainsFunc(strings.Split(parts[2], ","), func(o string) bool { return !volumeOptRe.MatchString(o) }) {
			u.fail(field, "options %q are not mount options separated by ','", parts[2])
			continue
		}
		u.line("Volume", v)
	}
	// Read-only, and relabelled private (Z): Debian hosts run without SELinux, where podman
	// skips relabelling; on a host with SELinux the container could not read the files without
	// it, and relabelling is harmless there, since each directory belongs to this one container
	// (its name is in the directory's) and holds nothing else.
	for _, cf := range configs {
		u.line("Volume", cf.Path+":"+strings.TrimPrefix(cf.Path, dir)+":ro,Z")
	}
}

func (u *unit) user() {
	if u.c.User == "" {
		return
	}
	if !userRe.MatchString(u.c.User) {
		u.fail("user", "%q is not USER or USER:GROUP (names or numbers)", u.c.User)
		return
	}
	u.line("User", u.c.User)
}

// healthTimes is a health check's schedule, podman's defaults filled in.
type healthTimes struct {
	interval, timeout, start time.Duration
	retries                  int
}

// health writes the health check and Notify=healthy, so that the service's start job
// finishes only once the container is healthy. It returns nil without a check.
func (u *unit) health() *healthTimes {
	h := u.c.Health
	if h == nil {
		return nil
	}
	cmd, ok := u.healthCmd(h.Command)
	t := &healthTimes{interval: defaultHealthInterval, timeout: defaultHealthTimeout, retries: defaultHealthRetries}
	dur := func(field, s string, min time.Duration, into *time.Duration) {
		if s == "" {
			return
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < min {
			u.fail(field, "%q is not a duration of at least %v, e.g. \"30s\"", s, min)
			ok = false
			return
		}
		*into = d
	}
	dur("health.interval", h.Interval, time.Second, &t.interval)
	dur("health.timeout", h.Timeout, time.Second, &t.timeout)
	dur("health.start_period", h.StartPeriod, 0, &t.start)
	if h.Retries < 0 {
		u.fail("health.retries", "%d is negative", h.Retries)
		ok = false
	} else if h.Retries > 0 {
		t.retries = h.Retries
	}
	if !ok {
		return nil
	}
	u.line("HealthCmd", cmd)
	u.line("HealthInterval", t.interval.String())
	u.line("HealthTimeout", t.timeout.String())
	u.line("HealthRetries", strconv.Itoa(t.retries))
	if t.start > 0 {
		u.line("HealthStartPeriod", t.start.String())
	}
	u.line("Notify", "healthy")
	return t
}

// healthCmd renders an exec-form health check for HealthCmd=, which quadlet hands to podman's
// --health-cmd as it is. Podman reads a JSON array of two or more words as an exec form
// (["CMD", words...]), but a one-word array as a shell command (/bin/sh -c WORD), and a
// first word CMD, CMD-SHELL or NONE as a keyword. A single word is therefore written as
// "CMD WORD", which podman splits at whitespace into the exec form ["CMD", WORD].
func (u *unit) healthCmd(cmd []string) (string, bool) {
	if len(cmd) == 0 {
		u.fail("health.command", "is empty: give the check's command, e.g. [\"curl\", \"-fsS\", \"http://localhost/\"]")
		return "", false
	}
	for i, a := range cmd {
		if !u.text(fmt.Sprintf("health.command[%d]", i), a) {
			return "", false
		}
	}
	switch strings.ToUpper(cmd[0]) {
	case "CMD", "CMD-SHELL", "NONE":
		u.fail("health.command[0]", "%q is a keyword to podman, not a command; for a shell command write [\"/bin/sh\", \"-c\", \"...\"]", cmd[0])
		return "", false
	}
	if len(cmd) > 1 {
		return raw(jsonArray(cmd)), true
	}
	if cmd[0] == "" || strings.ContainsFunc(cmd[0], func(r rune) bool { return unicode.IsSpace(r) || strings.ContainsRune(`"'\`, r) }) {
		u.fail("health.command[0]", "%q: a one-word health command cannot hold whitespace, quotes or backslashes; pass its arguments as more words", cmd[0])
		return "", false
	}
	return raw("CMD " + cmd[0]), true
}

func (u *unit) restart() {
	r := cmp.Or(u.c.Restart, "always")
	if !slices.Contains(restarts, r) {
		u.fail("restart", "%q is not a systemd Restart= policy: %s", u.c.Restart, strings.Join(restarts, ", "))
		return
	}
	u.line("Restart", r)
}

// startTimeout is TimeoutStartSec=: without a health check the start only creates the
// container; with one, the start job lasts until the container is healthy (Notify=healthy),
// which podman allows the start period plus one check per retry and one more, each taking up
// to interval and timeout. Never below minStartTimeout.
func startTimeout(h *healthTimes) time.Duration {
	if h == nil {
		return minStartTimeout
	}
	t := h.start + time.Duration(h.retries+1)*(h.interval+h.timeout)
	return max(minStartTimeout, (t + time.Second - 1).Truncate(time.Second))
}

// jsonArray encodes ss as a JSON array of strings, without HTML escaping.
func jsonArray(ss []string) string {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	_ = e.Encode(ss) // strings always encode
	return strings.TrimSuffix(b.String(), "\n")
}

// Every value of [Container] ends up on the ExecStart= line quadlet writes, where systemd
// expands % specifiers and $ environment variables: doubled, they stand for themselves.
var specials = strings.NewReplacer("%", "%%", "$", "$$")

// raw escapes a value quadlet passes on as one argument without splitting it (Entrypoint=,
// HealthCmd=, and the like).
func raw(s string) string { return specials.Replace(s) }

var quoted = strings.NewReplacer("%", "%%", "$", "$$", `\`, `\\`, `"`, `\"`)

// word quotes s as one word of a value quadlet splits like a systemd command line (Exec=,
// Environment=, Label=): within double quotes, with backslash and double quote escaped. Control
// characters never get here (see unit.text).
func word(s string) string {
	if s != "" && !strings.ContainsAny(s, " \"'\\") {
		return specials.Replace(s)
	}
	return `"` + quoted.Replace(s) + `"`
}

// plain reports whether s is free of what a value cannot carry unquoted through a Volume= value
// or a RequiresMountsFor= list (a space-separated list that quadlet fills with the host paths of
// volumes): whitespace, control characters, quotes, backslash and systemd's specials.
func plain(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r) || strings.ContainsRune(`"'\$%`, r)
	})
}
