package quadlet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// UnitError is quadlet's complaint about one unit.
type UnitError struct {
	Unit    string // the unit's file name
	Problem string // what quadlet said, or that it made no service of the unit
}

func (e *UnitError) Error() string { return fmt.Sprintf("quadlet: unit %s: %s", e.Unit, e.Problem) }

// Validate runs the quadlet generator (quadletBin, e.g. /usr/libexec/podman/quadlet) with
// -dryrun on units staged in a temporary directory. A non-zero exit, any complaint on stderr,
// or a unit missing from its output is an error: a UnitError for each unit a complaint names
// or that quadlet made no service of (quadlet -dryrun exits 0 on some errors, and the
// generator at boot drops a bad unit silently), and a plain error quoting quadlet otherwise;
// they come joined.
func Validate(ctx context.Context, quadletBin string, units []Unit) error {
	_, err := Generate(ctx, quadletBin, units)
	return err
}

// Generate runs quadlet -dryrun on units like Validate and returns the service units quadlet
// makes of them, by service name (Unit.Service), when it has nothing to complain about.
func Generate(ctx context.Context, quadletBin string, units []Unit) (map[string][]byte, error) {
	dir, err := os.MkdirTemp("", "cairn-quadlet-")
	if err != nil {
		return nil, fmt.Errorf("quadlet: staging units: %w", err)
	}
	defer os.RemoveAll(dir)
	seen := map[string]bool{}
	for _, u := range units {
		if u.Name == "" || u.Name != filepath.Base(u.Name) || strings.HasPrefix(u.Name, ".") {
			return nil, fmt.Errorf("quadlet: unit name %q is not a plain file name", u.Name)
		}
		if seen[u.Name] {
			return nil, fmt.Errorf("quadlet: unit %s is given twice", u.Name)
		}
		seen[u.Name] = true
		if err := os.WriteFile(filepath.Join(dir, u.Name), u.Data, 0o644); err != nil {
			return nil, fmt.Errorf("quadlet: staging units: %w", err)
		}
	}

	cmd := exec.CommandContext(ctx, quadletBin, "-dryrun")
	// QUADLET_UNIT_DIRS makes quadlet read the staged units and nothing else; the rest of the
	// environment is left out so that the result does not depend on the caller's.
	cmd.Env = []string{"QUADLET_UNIT_DIRS=" + dir, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("quadlet: running %s: %w", quadletBin, ctx.Err())
	}
	var exitErr *exec.ExitError
	if runErr != nil && !errors.As(runErr, &exitErr) {
		return nil, fmt.Errorf("quadlet: running %s: %w", quadletBin, runErr)
	}

	services := splitDryRun(stdout.Bytes())
	complaints := complaintsOf(stderr.String())
	var errs []error
	named := map[string]bool{}
	for _, u := range units {
		var said []string
		for _, c := range complaints {
			if mentions(c, u.Name) {
				said = append(said, c)
				named[c] = true
			}
		}
		switch {
		case len(said) > 0:
			errs = append(errs, &UnitError{Unit: u.Name, Problem: strings.Join(said, "; ")})
		case services[u.Service] == nil:
			errs = append(errs, &UnitError{Unit: u.Name, Problem: fmt.Sprintf("quadlet made no %s of it", u.Service)})
		}
	}
	var other []string
	for _, c := range complaints {
		if !named[c] {
			other = append(other, c)
		}
	}
	if len(other) > 0 {
		errs = append(errs, fmt.Errorf("quadlet: %s", strings.Join(other, "; ")))
	}
	if exitErr != nil && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("quadlet: %s -dryrun failed (%v) without saying why", quadletBin, exitErr))
	} else if exitErr != nil {
		errs = append(errs, fmt.Errorf("quadlet: %s -dryrun: %v", quadletBin, exitErr))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	out := make(map[string][]byte, len(units))
	for _, u := range units {
		out[u.Service] = services[u.Service]
	}
	return out, nil
}

// dryRunHeader starts each service quadlet -dryrun prints: ---NAME.service--- on a line of its
// own (the output directory is empty in a dry run, so the path is the bare name).
var dryRunHeader = regexp.MustCompile(`(?m)^---([^/\n]+)---$`)

// splitDryRun splits quadlet -dryrun's output into its services, by name.
func splitDryRun(out []byte) map[string][]byte {
	services := map[string][]byte{}
	locs := dryRunHeader.FindAllSubmatchIndex(out, -1)
	for i, l := range locs {
		end := len(out)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		body := out[l[1]:end]
		body = bytes.TrimPrefix(body, []byte("\n"))
		// quadlet prints a blank line after each service.
		body = bytes.TrimSuffix(body, []byte("\n"))
		services[string(out[l[2]:l[3]])] = body
	}
	return services
}

// quadletLog is the prefix of each line quadlet logs: quadlet-generator[PID]: .
var quadletLog = regexp.MustCompile(`^quadlet-generator\[[0-9]+\]: `)

// complaintsOf returns quadlet's stderr lines but for the progress messages a dry run prints
// (it turns on quadlet's debug log). A message of several lines comes with the prefix on its
// first line only; its lines are kept apart, since each names its own unit.
func complaintsOf(stderr string) []string {
	var out []string
	for line := range strings.Lines(stderr) {
		line = strings.TrimSpace(quadletLog.ReplaceAllString(line, ""))
		if line == "" || strings.HasPrefix(line, "Loading source unit file ") || strings.HasPrefix(line, "Loading source drop-in file ") {
			continue
		}
		out = append(out, line)
	}
	return out
}

// mentions reports whether quadlet's message names the unit file: as the whole name, not as
// the tail of a longer one (cairn-web.container is not cairn-myweb.container).
func mentions(msg, unit string) bool {
	for i := 0; ; {
		j := strings.Index(msg[i:], unit)
		if j < 0 {
			return false
		}
		j += i
		before := j == 0 || !isNameByte(msg[j-1])
		end := j + len(unit)
		after := end == len(msg) || !isNameByte(msg[end])
		if before && after {
			return true
		}
		i = j + 1
	}
}

func isNameByte(b byte) bool {
	return b == '-' || b == '_' || b == '.' || b == '@' || 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9'
}

// Binaries is where tests and tools look for quadlet, in order: the environment variable
// CAIRN_QUADLET, podman's own place on a host, and where scripts/deps.sh installs it on a
// build machine.
func Binaries() []string {
	return slices.DeleteFunc([]string{os.Getenv("CAIRN_QUADLET"), "/usr/libexec/podman/quadlet", "/usr/local/libexec/cairn/quadlet"},
		func(s string) bool { return s == "" })
}

// Find returns the first of Binaries that is an executable file, or "" when there is none.
func Find() string {
	for _, p := range Binaries() {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}
