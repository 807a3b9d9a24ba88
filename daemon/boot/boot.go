// Package boot serves what a machine fetches over HTTP once its firmware runs iPXE: the boot
// script of its MAC (/boot/ipxe), and the netboot assets of the store (/boot/netboot/NAME for
// kernels and initramfs, /boot/NAME for iPXE binaries, for UEFI HTTP boot), with Range.
//
// The script follows the machine's record in the state (decision 7): a MAC the state does not
// know, or a discovered one, boots the cairn agent to report its inventory; a host waiting to
// be provisioned, being provisioned (a power cut half-way), or whose last attempt failed, boots
// the agent with a new one-time provisioning token (each boot is a new attempt); a provisioned
// host boots from its local disk, so that a machine whose boot order puts the network first
// never loops into an install. After state.MaxAttempts failed attempts in a row the script
// boots neither the agent nor the disk, which may be half-written: it says so and asks again
// every WaitDelay, until the host's provision counter is raised. An ephemeral appliance provisions nothing: the script says why and reboots.
//
// Scripts are text templates (templates/*.ipxe, embedded). Every fetch in them is retried a
// bounded number of times; a last failure prints the reason on the console and reboots after
// a delay. Every value a script holds is checked to be one plain iPXE word.
//
// It reads the state and writes only provisioning tokens (package daemon/token); the agent
// API the booted agent calls is package daemon/agents.
package boot

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"

	agentapi "github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/agent/initramfs"
	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/daemon/token"
	"github.com/cairn-appliance/cairn/site"
)

// The netboot artifacts the agent's script boots unless the Config names others: those cairn
// build writes for the [agent] table of build.toml.
const (
	DefaultKernel    = initramfs.KernelArtifact
	DefaultInitramfs = initramfs.InitramfsArtifact
)

// Config wires the boot endpoints to the daemon.
type Config struct {
	Store state.Store
	// Tokens mints provisioning tokens; its Ephemeral refuses them, and the script says why.
	Tokens *token.Issuer
	// Content holds the netboot assets: the medium's store, then the upper one.
	Content *airgap.Stores
	// Server is the daemon's base URL as the machines reach it (http://10.20.0.1:5000). Empty
	// means the address each request came to (its Host), which is the one the machine used.
	Server string
	// Kernel and Initramfs name the netboot artifacts of the agent; empty means
	// DefaultKernel and DefaultInitramfs.
	Kernel, Initramfs string
	// Tries bounds each fetch of a script (default 5); RetryDelay is the wait between two
	// (default 5 s) and RebootDelay the wait before rebooting after a last failure (30 s).
	Tries       int
	RetryDelay  time.Duration
	RebootDelay time.Duration
	// WaitDelay is how long the script of a host whose attempts keep failing waits before
	// asking for a new one (default 5 min).
	WaitDelay time.Duration
	Log       *slog.Logger
}

type server struct {
	Config
}

// New returns the handler of /boot/: mount it at "/boot/" on the daemon's HTTP listener.
func New(cfg Config) (http.Handler, error) {
	if cfg.Store == nil || cfg.Tokens == nil || cfg.Content == nil {
		return nil, errors.New("boot: a state store, a token issuer and the store's content are needed")
	}
	if cfg.Server != "" {
		s, err := baseURL(cfg.Server)
		if err != nil {
			return nil, fmt.Errorf("boot: server %q: %w", cfg.Server, err)
		}
		cfg.Server = s
	}
	if cfg.Kernel == "" {
		cfg.Kernel = DefaultKernel
	}
	if cfg.Initramfs == "" {
		cfg.Initramfs = DefaultInitramfs
	}
	if cfg.Tries <= 0 {
		cfg.Tries = 5
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = 5 * time.Second
	}
	if cfg.RebootDelay <= 0 {
		cfg.RebootDelay = 30 * time.Second
	}
	if cfg.WaitDelay <= 0 {
		cfg.WaitDelay = 5 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &server{Config: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boot/ipxe", s.script)
	mux.HandleFunc("GET /boot/netboot/{name}", s.netboot)
	mux.HandleFunc("GET /boot/{name}", s.ipxeBinary)
	return mux, nil
}

// ScriptURL is the URL of a machine's boot script, for the DHCP service to hand to iPXE as
// its boot file name: iPXE fills in ${platform} (pcbios or efi) itself.
func ScriptURL(server string, mac site.MAC) string {
	return strings.TrimSuffix(server, "/") + "/boot/ipxe?mac=" + mac.String() + "&platform=${platform}"
}

// Platforms are the values of iPXE's ${platform} that a script is made for.
var platforms = map[string]bool{"pcbios": true, "efi": true}

// parseMAC reads the mac query parameter: a network card's MAC in any form site.ParseMAC takes.
func parseMAC(q string) (site.MAC, error) {
	m, err := site.ParseMAC(q)
	switch {
	case err != nil:
		return m, fmt.Errorf("mac %q: expected a MAC such as 52:54:00:12:34:56", q)
	case m.IsZero() || m[0]&1 == 1:
		return m, fmt.Errorf("mac %q: not a network card's address (null or multicast)", q)
	}
	return m, nil
}

func (s *server) script(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	srv, err := s.server(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	d := scriptData{Server: srv, Tries: s.Tries, RetryDelay: seconds(s.RetryDelay), RebootDelay: seconds(s.RebootDelay)}
	if q.Has("mac") {
		m, err := parseMAC(q.Get("mac"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		d.MAC = m.String()
	}
	platform := q.Get("platform")
	if d.MAC == "" || platform == "" {
		// Without a MAC or a platform, ask again with them: iPXE fills both in.
		s.render(w, "platform.ipxe", d)
		return
	}
	if !platforms[platform] {
		http.Error(w, fmt.Sprintf("platform %q: expected pcbios or efi (iPXE's ${platform})", platform), http.StatusBadRequest)
		return
	}
	d.Platform = platform
	name, tmpl, err := s.decide(r.Context(), &d)
	if err != nil {
		s.Log.Error("boot script", "mac", d.MAC, "err", err)
		http.Error(w, "making the boot script: "+err.Error(), http.StatusInternalServerError)
		return
	}
	s.Log.Info("boot script", "mac", d.MAC, "host", name, "platform", platform, "script", strings.TrimSuffix(tmpl, ".ipxe"))
	s.render(w, tmpl, d)
}

// decide fills d from the machine's record and returns the record's name and the template.
func (s *server) decide(ctx context.Context, d *scriptData) (string, string, error) {
	var hosts []state.Host
	if err := s.Store.View(ctx, func(tx state.Tx) (err error) {
		hosts, err = state.HostsByMAC(tx, d.MAC)
		return err
	}); err != nil {
		return "", "", err
	}
	h, found := pick(hosts)
	if found {
		d.Name, d.Phase = h.Name, string(h.Phase)
	}
	switch {
	case !found || h.Phase == state.Discovered:
		s.agent(d, agentapi.ModeDiscover, "")
		return h.Name, "agent.ipxe", nil
	case h.Phase == state.Failed && h.Failures >= state.MaxAttempts:
		d.Failures, d.WaitDelay = h.Failures, seconds(s.WaitDelay)
		return h.Name, "waiting.ipxe", nil
	case h.Phase == state.Pending || h.Phase == state.Provisioning || h.Phase == state.Failed && h.Failures > 0:
		// A failed host whose failures are not provisioning attempts (Failures 0) failed
		// later, on its own disk: it boots that disk, below.
		tok, err := s.Tokens.Provisioning(ctx, h.Name)
		if errors.Is(err, token.ErrEphemeral) {
			return h.Name, "ephemeral.ipxe", nil
		}
		if err != nil {
			return h.Name, "", err
		}
		s.agent(d, agentapi.ModeProvision, tok)
		return h.Name, "agent.ipxe", nil
	default:
		// Provisioned and on (deploying, ready): the disk is what there is.
		return h.Name, "local-" + d.Platform + ".ipxe", nil
	}
}

// pick chooses the record a MAC boots as: a site host before a discovered record (for the
// moment a site edit takes to adopt it).
func pick(hosts []state.Host) (state.Host, bool) {
	for _, h := range hosts {
		if h.Phase != state.Discovered {
			return h, true
		}
	}
	if len(hosts) > 0 {
		return hosts[0], true
	}
	return state.Host{}, false
}

// agent fills in the kernel, initramfs and kernel command line of the agent.
func (s *server) agent(d *scriptData, mode, tok string) {
	d.Token = tok
	d.KernelURL = d.Server + "/boot/netboot/" + s.Kernel
	d.InitramfsURL = d.Server + "/boot/netboot/" + s.Initramfs
	d.Args = []string{"initrd=initrd", agentapi.ArgServer + "=" + d.Server, agentapi.ArgMode + "=" + mode}
	if tok != "" {
		d.Args = append(d.Args, agentapi.ArgToken+"="+tok)
	}
	d.Args = append(d.Args, agentapi.ArgMAC+"="+d.MAC, "console=ttyS0,115200n8", "console=tty0")
}

// server is the base URL the machine reached the daemon at.
func (s *server) server(r *http.Request) (string, error) {
	if s.Server != "" {
		return s.Server, nil
	}
	if !hostPort.MatchString(r.Host) {
		return "", fmt.Errorf("the request's Host %q is not an address and port", r.Host)
	}
	return "http://" + r.Host, nil
}

// hostPort is what a Host header may be for a script to name it: a DNS name, an IPv4 address
// or a bracketed IPv6 one, with an optional port.
var hostPort = regexp.MustCompile(`^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$`)

// baseURL checks a configured server URL: http or https, a host, nothing after it.
func baseURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.Trim(u.Path, "/") != "" {
		return "", errors.New("expected http://HOST:PORT")
	}
	if !hostPort.MatchString(u.Host) {
		return "", fmt.Errorf("host %q: expected an address and port", u.Host)
	}
	return u.Scheme + "://" + u.Host, nil
}

func seconds(d time.Duration) int { return int((d + time.Second - 1) / time.Second) }

// scriptData is what the templates see.
type scriptData struct {
	MAC, Name, Phase, Platform string
	Server                     string
	Tries                      int
	RetryDelay, RebootDelay    int // seconds

	// The agent's script.
	Token                   string
	KernelURL, InitramfsURL string
	Args                    []string

	// The waiting script: how many attempts failed, and how long to wait before asking again.
	Failures, WaitDelay int
}

//go:embed templates/*.ipxe
var templateFS embed.FS

var scripts = template.Must(template.New("").Funcs(template.FuncMap{"w": word}).ParseFS(templateFS, "templates/*.ipxe"))

// plainWord is one iPXE word that expands nothing: no white space, no $ (settings), no
// quotes or backslashes, and no # (a comment where a word starts).
var plainWord = regexp.MustCompile(`^[A-Za-z0-9._:/=,+@%?&\[\]()-]+$`)

// word prints v into a script, refusing anything but one plain word.
func word(v any) (string, error) {
	if n, ok := v.(int); ok {
		return strconv.Itoa(n), nil
	}
	s := fmt.Sprint(v)
	if !plainWord.MatchString(s) || strings.Contains(s, "&&") || strings.Contains(s, "||") {
		return "", fmt.Errorf("%q cannot go into an iPXE script", s)
	}
	return s, nil
}

func (s *server) render(w http.ResponseWriter, name string, d scriptData) {
	var b bytes.Buffer
	if err := scripts.ExecuteTemplate(&b, name, d); err != nil {
		s.Log.Error("rendering a boot script", "script", name, "mac", d.MAC, "err", err)
		http.Error(w, "rendering the boot script: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store") // a script holds a token, and the next boot wants a new one
	_, _ = w.Write(b.Bytes())
}
