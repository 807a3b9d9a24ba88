package netboot

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/cairn-appliance/cairn/agent/api"
)

// Args are what the kernel command line tells the netboot agent (see package agent).
type Args struct {
	// Server is the daemon's base URL, without a trailing slash: http://10.20.0.1:5000.
	Server string
	// Mode is api.ModeProvision or api.ModeDiscover.
	Mode string
	// Token is the one-time provisioning token; empty in discover mode.
	Token string
	// MAC is the address the machine booted from, canonical (lowercase, colons).
	MAC string
}

// ErrNotNetboot says the command line carries none of the agent's arguments: the kernel was not
// booted by the daemon's script.
var ErrNotNetboot = errors.New("netboot: the kernel command line has no cairn.server, cairn.mode or cairn.mac: this kernel was not booted by cairn's iPXE script")

// ParseCmdline reads the agent's arguments from a kernel command line (/proc/cmdline). Other
// arguments are ignored; a repeated one counts as given last, as the kernel reads it. Each
// error names the argument and what was expected.
func ParseCmdline(cmdline string) (Args, error) {
	var a Args
	var errs []error
	seen := false
	for _, f := range strings.Fields(cmdline) {
		key, val, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		switch key {
		case api.ArgServer:
			a.Server, seen = val, true
		case api.ArgMode:
			a.Mode, seen = val, true
		case api.ArgToken:
			a.Token = val
		case api.ArgMAC:
			a.MAC, seen = val, true
		}
	}
	if !seen {
		return a, ErrNotNetboot
	}
	if s, err := serverURL(a.Server); err != nil {
		errs = append(errs, fmt.Errorf("%s=%q: %w", api.ArgServer, a.Server, err))
	} else {
		a.Server = s
	}
	switch a.Mode {
	case api.ModeProvision:
		if a.Token == "" {
			errs = append(errs, fmt.Errorf("%s=%s needs %s=TOKEN, the one-time provisioning token the script gives", api.ArgMode, a.Mode, api.ArgToken))
		} else if !tokenWord(a.Token) {
			errs = append(errs, fmt.Errorf("%s: expected URL-safe base64 (A-Z a-z 0-9 - _), got %d other characters", api.ArgToken, len(a.Token)))
		}
	case api.ModeDiscover:
		a.Token = "" // a discovery agent sends none, whatever the line says
	default:
		errs = append(errs, fmt.Errorf("%s=%q: expected %s or %s", api.ArgMode, a.Mode, api.ModeProvision, api.ModeDiscover))
	}
	hw, err := net.ParseMAC(a.MAC)
	switch {
	case err != nil || len(hw) != 6:
		errs = append(errs, fmt.Errorf("%s=%q: expected a MAC such as 52:54:00:12:34:56", api.ArgMAC, a.MAC))
	case hw[0]&1 == 1 || allZero(hw):
		errs = append(errs, fmt.Errorf("%s=%q: not a network card's address (null or multicast)", api.ArgMAC, a.MAC))
	default:
		a.MAC = hw.String()
	}
	return a, errors.Join(errs...)
}

// serverURL checks the daemon's base URL: http or https, a host, no path beyond "/".
func serverURL(s string) (string, error) {
	if s == "" {
		return "", errors.New("missing: expected http://APPLIANCE:PORT")
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", errors.New("expected http://APPLIANCE:PORT")
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.Trim(u.Path, "/") != "" {
		return "", errors.New("expected http://APPLIANCE:PORT")
	}
	return u.Scheme + "://" + u.Host, nil
}

func tokenWord(s string) bool {
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
