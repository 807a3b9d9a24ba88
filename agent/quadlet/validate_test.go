package quadlet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/cairn-appliance/cairn/agent/api"
)

// realQuadlet finds podman 5's quadlet (see Binaries). Without one the test skips, except in
// CI (CI=true), where it fails: CI must test against the real generator.
func realQuadlet(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CAIRN_QUADLET"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("CAIRN_QUADLET=%s: %v", p, err)
		}
	}
	if p := Find(); p != "" {
		return p
	}
	msg := fmt.Sprintf("no quadlet at %s: run scripts/deps.sh (it installs podman 5's quadlet at /usr/local/libexec/cairn/quadlet) or set CAIRN_QUADLET", strings.Join(Binaries(), ", "))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// runQuadlet runs quadlet -dryrun on units itself and returns its exit code and stderr, to show
// what Validate has to deal with.
func runQuadlet(t *testing.T, bin string, units ...Unit) (int, string) {
	t.Helper()
	dir := t.TempDir()
	for _, u := range units {
		if err := os.WriteFile(filepath.Join(dir, u.Name), u.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.CommandContext(ctx(t), bin, "-dryrun")
	cmd.Env = []string{"QUADLET_UNIT_DIRS=" + dir}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

func TestValidateSample(t *testing.T) {
	bin := realQuadlet(t)
	r := render(t, sample())
	if err := Validate(ctx(t), bin, r.Units); err != nil {
		t.Fatalf("Validate(sample) = %v", err)
	}
	services, err := Generate(ctx(t), bin, r.Units)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := slices.Sorted(maps.Keys(services)), []string{"cairn-batch.job.service", "cairn-cache.service", "cairn-web.service"}; !slices.Equal(got, want) {
		t.Fatalf("services = %q, want %q", got, want)
	}
	for name, s := range services {
		for _, want := range []string{"\nType=notify\n", "\nTimeoutStartSec=", "\nRestartSec=5\n", "\n[Install]\nWantedBy=multi-user.target\n", "\nExecStart=/usr/bin/podman run "} {
			if !strings.Contains(string(s), want) {
				t.Errorf("%s lacks %q:\n%s", name, want, s)
			}
		}
	}
}

// broken is a unit quadlet refuses: a key it does not know.
func broken() Unit {
	return Unit{Name: "cairn-bad.container", Container: "bad", Service: "cairn-bad.service",
		Data: []byte("[Container]\nImage=docker.io/library/nginx@" + digest(1) + "\nFrobnicate=yes\n")}
}

func TestValidateBrokenUnit(t *testing.T) {
	bin := realQuadlet(t)
	good := render(t, sample()).Units
	units := append(slices.Clone(good), broken())

	// Control: quadlet itself exits non-zero here.
	if code, stderr := runQuadlet(t, bin, units...); code == 0 {
		t.Fatalf("quadlet exited 0 on an unknown key; stderr:\n%s", stderr)
	}
	err := Validate(ctx(t), bin, units)
	if err == nil {
		t.Fatal("Validate passed a unit with an unknown key")
	}
	var ue *UnitError
	if !errors.As(err, &ue) || ue.Unit != "cairn-bad.container" {
		t.Fatalf("Validate error %q does not name cairn-bad.container as a UnitError", err)
	}
	if !strings.Contains(ue.Problem, "Frobnicate") {
		t.Errorf("Validate error %q does not quote quadlet on the key", err)
	}
	for _, u := range good {
		if strings.Contains(err.Error(), "unit "+u.Name+":") {
			t.Errorf("Validate error %q blames the good unit %s", err, u.Name)
		}
	}
}

// TestValidateExitZero covers what quadlet -dryrun reports with exit status 0: a warning on
// stderr, and a unit it skips.
func TestValidateExitZero(t *testing.T) {
	bin := realQuadlet(t)
	short := Unit{Name: "cairn-short.container", Service: "cairn-short.service",
		Data: []byte("[Container]\nImage=nginx\n")}
	skipped := Unit{Name: "cairn-web.conatiner", Service: "cairn-web.service",
		Data: render(t, sample()).Units[2].Data}
	for _, tc := range []struct {
		unit Unit
		want string
	}{
		{short, "not a fully qualified image name"},
		{skipped, "made no cairn-web.service"},
	} {
		t.Run(tc.unit.Name, func(t *testing.T) {
			if code, stderr := runQuadlet(t, bin, tc.unit); code != 0 {
				t.Fatalf("quadlet exited %d, want 0 (the case this test is about); stderr:\n%s", code, stderr)
			}
			err := Validate(ctx(t), bin, []Unit{tc.unit})
			var ue *UnitError
			if !errors.As(err, &ue) || ue.Unit != tc.unit.Name || !strings.Contains(ue.Problem, tc.want) {
				t.Fatalf("Validate = %v, want a UnitError for %s saying %q", err, tc.unit.Name, tc.want)
			}
		})
	}
}

// fake writes a stand-in for quadlet: a shell script.
func fake(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "quadlet")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidateFake(t *testing.T) {
	units := render(t, sample()).Units[:1] // cairn-batch.job.container
	out := `echo "---cairn-batch.job.service---"; echo "[Service]"; echo "ExecStart=/bin/true"; echo`
	for _, tc := range []struct {
		name, script string
		want         []string // "" for no error
	}{
		{"clean", out, nil},
		{"exit 3 silently", out + "; exit 3", []string{"exit status 3", "without saying why"}},
		{"exit 0, no output", "exit 0", []string{"unit cairn-batch.job.container", "made no cairn-batch.job.service"}},
		{"complaint naming the unit", out + `; echo "quadlet-generator[1]: converting \"cairn-batch.job.container\": oops" >&2`, []string{"unit cairn-batch.job.container", "oops"}},
		{"complaint naming no unit", out + `; echo "quadlet-generator[1]: something odd" >&2`, []string{"quadlet: something odd"}},
		{"complaint naming a longer unit", out + `; echo "quadlet-generator[1]: converting \"x-cairn-batch.job.container\": oops" >&2`, []string{"quadlet: converting \"x-cairn-batch.job.container\": oops"}},
		{"progress only", out + `; echo "quadlet-generator[1]: Loading source unit file $QUADLET_UNIT_DIRS/cairn-batch.job.container" >&2`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(ctx(t), fake(t, tc.script), units)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate = nil, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate error %q does not say %q", err, w)
				}
			}
			if tc.name == "complaint naming a longer unit" && strings.Contains(err.Error(), "unit cairn-batch.job.container:") {
				t.Errorf("Validate error %q blames cairn-batch.job.container for another unit's complaint", err)
			}
		})
	}
	if err := Validate(ctx(t), filepath.Join(t.TempDir(), "none"), units); err == nil {
		t.Error("Validate with a missing binary = nil, want an error")
	}
	if err := Validate(ctx(t), "/bin/true", []Unit{{Name: "../x.container"}}); err == nil {
		t.Error("Validate of a unit named ../x.container = nil, want an error")
	}
}

func TestMentions(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want bool
	}{
		{`converting "cairn-web.container": bad`, true},
		{`unsupported key 'X' in group 'Container' in /tmp/d/cairn-web.container`, true},
		{`cairn-web.container`, true},
		{`converting "cairn-myweb.container": bad`, false},
		{`converting "cairn-web.container.d": bad`, false},
		{`converting "x-cairn-web.container": bad`, false},
	} {
		if got := mentions(tc.msg, "cairn-web.container"); got != tc.want {
			t.Errorf("mentions(%q) = %v, want %v", tc.msg, got, tc.want)
		}
	}
}

// TestExecStart reads back the command line systemd runs, from quadlet's own output: every
// value arrives at podman as the site wrote it, whatever quotes, backslashes, % and $ it holds.
func TestExecStart(t *testing.T) {
	bin := realQuadlet(t)
	d := sample()
	r := render(t, d)
	services, err := Generate(ctx(t), bin, r.Units)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range d.Containers {
		t.Run(c.Name, func(t *testing.T) {
			line := ""
			for l := range strings.Lines(string(services[ServiceName(c.Name)])) {
				if v, ok := strings.CutPrefix(l, "ExecStart="); ok {
					line = strings.TrimSuffix(v, "\n")
				}
			}
			argv, err := systemdArgv(line)
			if err != nil {
				t.Fatalf("ExecStart=%s: %v", line, err)
			}
			checkPodmanArgs(t, &c, argv)
		})
	}

	// Control: the reader sees a value that systemd would change.
	for _, bad := range []string{`/usr/bin/podman run --env A=$HOME x`, `/usr/bin/podman run --env A=50%x x`, `/usr/bin/podman run a ; b`} {
		if _, err := systemdArgv(bad); err == nil {
			t.Errorf("systemdArgv(%q) = nil error, want one", bad)
		}
	}
}

func checkPodmanArgs(t *testing.T, c *api.Container, argv []string) {
	t.Helper()
	name, _ := strings.CutSuffix(strings.SplitN(c.Image, "@", 2)[0], "")
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name = name[:i]
	}
	image := name + "@" + c.Digest
	at := slices.Index(argv, image)
	if len(argv) < 2 || argv[0] != "/usr/bin/podman" || argv[1] != "run" || at < 0 {
		t.Fatalf("ExecStart is not podman run ... %s ...: %q", image, argv)
	}
	opts := argv[2:at]
	values := func(flag string) []string {
		var vs []string
		for i := 0; i+1 < len(opts); i++ {
			if opts[i] == flag {
				vs = append(vs, opts[i+1])
				i++
			}
		}
		return vs
	}
	eq := func(what string, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s = %q, want %q", what, got, want)
		}
	}
	eq("command", argv[at+1:], c.Command)
	eq("--name", values("--name"), []string{c.Name})
	eq("--pull", values("--pull"), []string{"never"})

	var ep []string
	if eps := values("--entrypoint"); len(eps) == 1 {
		if err := json.Unmarshal([]byte(eps[0]), &ep); err != nil {
			t.Errorf("--entrypoint %q is not a JSON array: %v", eps[0], err)
		}
	} else if len(eps) > 1 {
		t.Errorf("--entrypoint given %d times", len(eps))
	}
	eq("entrypoint", ep, c.Entrypoint)

	var env []string
	for k, v := range c.Env {
		env = append(env, k+"="+v)
	}
	if len(c.Files) > 0 {
		env = append(env, ConfigHashEnv+"="+ConfigHash(c.Files))
	}
	slices.Sort(env)
	eq("--env", values("--env"), env)

	labels := []string{ContainerLabel + "=" + c.Name, OwnerLabel + "=" + OwnerValue, RoleLabel + "=" + c.Role}
	eq("--label", slices.Sorted(slices.Values(values("--label"))), labels)

	eq("--publish", values("--publish"), c.Ports)
	vols := slices.Clone(c.Volumes)
	dir := "/var/lib/cairn/config/" + c.Name + "-" + ConfigHash(c.Files)
	for _, f := range slices.SortedFunc(slices.Values(c.Files), func(a, b api.File) int { return strings.Compare(a.Target, b.Target) }) {
		vols = append(vols, dir+f.Target+":"+f.Target+":ro,Z")
	}
	eq("-v", values("-v"), vols)

	var user []string
	if c.User != "" {
		user = []string{c.User}
	}
	eq("--user", values("--user"), user)
	var network []string
	if c.Network == "host" || c.Network == "none" {
		network = []string{c.Network}
	}
	eq("--network", values("--network"), network)

	if c.Health == nil {
		eq("--health-cmd", values("--health-cmd"), nil)
		if !slices.Contains(opts, "--sdnotify=conmon") {
			t.Errorf("no --sdnotify=conmon without a health check: %q", opts)
		}
		return
	}
	hc := values("--health-cmd")
	if len(hc) != 1 {
		t.Fatalf("--health-cmd = %q, want one", hc)
	}
	eq("health check", podmanHealthTest(hc[0]), append([]string{"CMD"}, c.Health.Command...))
	if !slices.Contains(opts, "--sdnotify=healthy") {
		t.Errorf("no --sdnotify=healthy with a health check: %q", opts)
	}
	for _, flag := range []string{"--health-interval", "--health-timeout", "--health-retries"} {
		if len(values(flag)) != 1 {
			t.Errorf("%s = %q, want one", flag, values(flag))
		}
	}
}

// podmanHealthTest is the health check podman 5.4 stores for the value of --health-cmd (its
// Healthcheck.Test): a JSON array of more than one word is an exec form; otherwise the value
// is split at the first space, and when its first word is CMD (or NONE) at every run of
// whitespace, keeping the words as they are; any other value is a shell command.
func podmanHealthTest(v string) []string {
	var words []string
	isArray := json.Unmarshal([]byte(v), &words) == nil
	if !isArray {
		words = strings.SplitN(v, " ", 2)
	}
	switch first := strings.ToUpper(words[0]); {
	case first == "CMD" || first == "NONE":
		return strings.Fields(v)
	case first == "CMD-SHELL":
		return words
	case isArray && len(words) > 1:
		return append([]string{"CMD"}, words...)
	default:
		return []string{"CMD-SHELL", strings.Join(words, " ")}
	}
}

// systemdArgv reads an ExecStart= value as systemd does: specifiers first (%% is %; quadlet's
// own %t, %N and %n stay), then words, unquoted and unescaped, then $$ as $. Anything this
// test's values should not contain is an error: another specifier, a single $ (systemd would
// substitute a variable), a lone ; (systemd would start a second command), an escape other
// than \\, \" and \'.
func systemdArgv(line string) ([]string, error) {
	var spec strings.Builder
	for i := 0; i < len(line); i++ {
		if line[i] != '%' {
			spec.WriteByte(line[i])
			continue
		}
		if i+1 == len(line) {
			return nil, fmt.Errorf("a %% at the end")
		}
		switch line[i+1] {
		case '%':
			spec.WriteByte('%')
		case 't', 'N', 'n':
			spec.WriteString(line[i : i+2])
		default:
			return nil, fmt.Errorf("specifier %%%c", line[i+1])
		}
		i++
	}
	s := spec.String()

	var argv []string
	for i := 0; ; {
		for i < len(s) && s[i] == ' ' {
			i++
		}
		if i == len(s) {
			break
		}
		if s[i] == ';' && (i+1 == len(s) || s[i+1] == ' ') {
			return nil, fmt.Errorf("a lone ; at byte %d", i)
		}
		var w strings.Builder
		var quote byte
		for ; i < len(s) && (quote != 0 || s[i] != ' '); i++ {
			switch c := s[i]; {
			case quote == 0 && (c == '"' || c == '\''):
				quote = c
			case c == quote:
				quote = 0
			case c == '\\':
				if i+1 == len(s) || !strings.ContainsRune(`\"'`, rune(s[i+1])) {
					return nil, fmt.Errorf("an escape other than \\\\, \\\" or \\' at byte %d", i)
				}
				i++
				w.WriteByte(s[i])
			default:
				w.WriteByte(c)
			}
		}
		if quote != 0 {
			return nil, fmt.Errorf("an unbalanced %c", quote)
		}
		word := w.String()
		var out strings.Builder
		for j := 0; j < len(word); j++ {
			if word[j] != '$' {
				out.WriteByte(word[j])
				continue
			}
			if j+1 < len(word) && word[j+1] == '$' {
				out.WriteByte('$')
				j++
				continue
			}
			if j+1 < len(word) && (word[j+1] == '{' || word[j+1] == '_' || unicode.IsLetter(rune(word[j+1]))) {
				return nil, fmt.Errorf("a variable systemd would substitute in %q", word)
			}
			out.WriteByte('$')
		}
		argv = append(argv, out.String())
	}
	return argv, nil
}
