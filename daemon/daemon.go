package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"github.com/opencontainers/go-digest"

	agentapi "github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/appliance"
	"github.com/cairn-appliance/cairn/daemon/agents"
	"github.com/cairn-appliance/cairn/daemon/api"
	"github.com/cairn-appliance/cairn/daemon/boot"
	"github.com/cairn-appliance/cairn/daemon/dhcp"
	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/daemon/tftp"
	"github.com/cairn-appliance/cairn/daemon/token"
	"github.com/cairn-appliance/cairn/daemon/watch"
	"github.com/cairn-appliance/cairn/site"
)

// Notifier tells the service manager about the daemon's state (sd_notify(3) lines such as
// READY=1). Systemd is the real one; tests record what they are told.
type Notifier interface {
	// Notify sends state. It reports false, nil when no service manager listens.
	Notify(state string) (bool, error)
	// WatchdogInterval is how often the manager wants WATCHDOG=1, or 0 when it does not.
	WatchdogInterval() time.Duration
}

// Systemd notifies the systemd unit the process runs under ($NOTIFY_SOCKET); outside systemd it
// does nothing.
type Systemd struct{}

// Notify implements Notifier.
func (Systemd) Notify(state string) (bool, error) { return sddaemon.SdNotify(false, state) }

// WatchdogInterval implements Notifier.
func (Systemd) WatchdogInterval() time.Duration {
	d, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil {
		return 0
	}
	return d
}

// Options are the process-level pieces Run needs; cmd/cairn wires them.
type Options struct {
	// Stdout receives the ready line (on the appliance, the journal and the serial console).
	Stdout io.Writer
	// Log receives the daemon's log. Nil discards it.
	Log *slog.Logger
	// Notifier tells systemd about readiness and feeds its watchdog. Nil means Systemd.
	Notifier Notifier
	// Reload delivers reload requests (SIGHUP from systemctl reload cairn).
	Reload <-chan os.Signal
	// Cmdline is the kernel command line, read for cairn.label=. Empty means /proc/cmdline.
	Cmdline string
	// FindMedium locates the medium; nil means appliance.FindMedium. Tests replace it.
	FindMedium func(context.Context, appliance.MediumConfig) (string, error)
	// Version is shown by the status API and page.
	Version string
}

// ReadyPrefix starts the line the daemon prints once it serves; VM tests wait for it on the
// serial console.
const ReadyPrefix = "cairn: READY"

// Run serves the store, and converges on the site when cfg.SiteDir is set, until ctx ends; a
// clean stop returns nil. It returns an error, without half-starting anything, when the store
// cannot be found or served or the state cannot be opened, and stops with the error of any of
// its services that fails.
func Run(ctx context.Context, cfg Config, opts Options) error {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	notifier := opts.Notifier
	if notifier == nil {
		notifier = Systemd{}
	}
	// Notifications are sent one at a time, and none after STOPPING=1: a watchdog tick or a
	// status line racing the stop must not tell systemd the daemon is still going.
	var (
		notifyMu sync.Mutex
		stopped  bool
	)
	notify := func(s string) {
		notifyMu.Lock()
		defer notifyMu.Unlock()
		if stopped {
			return
		}
		stopped = s == "STOPPING=1"
		if _, err := notifier.Notify(s); err != nil {
			log.Warn("telling systemd", "state", s, "err", err)
		}
	}
	stdout := opts.Stdout
	if stdout == nil {
		stdout = io.Discard
	}

	storeDir, seed, err := locateStore(ctx, cfg, opts, notifier)
	if err != nil {
		return err
	}
	ix, _, err := airgap.ReadIndex(storeDir)
	if err != nil {
		return fmt.Errorf("reading the store on the medium: %w", err)
	}
	reg, err := airgap.NewRegistry(airgap.RegistryConfig{Dir: storeDir, UpperDir: cfg.Upper})
	if err != nil {
		return err
	}
	ephemeral := ephemeralReason(cfg, log)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("registry: listening on %s (listen in the daemon config): %w", cfg.Listen, err)
	}
	defer ln.Close() // in case Run returns before the server owns it
	addr := ln.Addr().String()
	serving := fmt.Sprintf("serving %d artifacts from %s on %s", ix.Totals.Artifacts, storeDir, addr)
	plain := serving // what STATUS= says without a site
	if ephemeral != "" {
		plain = ephemeral + "; " + serving
	}
	status := func() string { return plain }

	wd := &watchdog{notify: notify, log: log, interval: notifier.WatchdogInterval(), probe: "http://" + loopback(addr) + "/v2/"}
	handler := reg
	var svcs []named
	if cfg.SiteDir == "" {
		svcs = append(svcs, named{"reload", &reloader{notify: notify, log: log, reload: opts.Reload, status: plain}})
	} else {
		st, conv, h, err := startConverging(cfg, opts, wiring{log: log, notify: notify, registry: reg,
			storeDir: storeDir, seed: seed, ephemeral: ephemeral})
		if err != nil {
			return err
		}
		defer st.Close()
		if cfg.PXE {
			pxe, follow, problems, err := startPXE(st, storeDir, addr, log)
			if err != nil {
				return err
			}
			svcs, conv.applied, conv.problems = append(svcs, pxe...), follow, problems
			if cfg.NetworkDir != "" {
				// The address first: DHCP and TFTP, told next, serve on it.
				nc := newNetconf(cfg.NetworkDir, log.With("service", "network"))
				conv.applied = append([]func(*site.Site){nc.Update}, conv.applied...)
				conv.problems = append(conv.problems, func() string {
					if p := nc.Problem(); p != "" {
						return "network not configured: " + p
					}
					return ""
				})
			}
		}
		conv.ephemeral, conv.serving, conv.reload = ephemeral, serving, opts.Reload
		// The site is loaded (and applied) before READY=1: systemctl start returns when the
		// daemon serves what the site says.
		conv.start(ctx)
		handler, status, wd.alive = h, func() string { return conv.status(ctx) }, conv.alive
		svcs = append(svcs, named{"watching the site", conv.watch}, named{"converging the site", conv})
	}
	svcs = append(svcs, named{"registry", newHTTPServer(ln, handler)}, named{"watchdog", wd})

	notify("READY=1\nSTATUS=" + status())
	fmt.Fprintf(stdout, "%s registry=%s store=%s artifacts=%d\n", ReadyPrefix, addr, storeDir, ix.Totals.Artifacts)
	log.Info("ready", "registry", addr, "store", storeDir, "artifacts", ix.Totals.Artifacts)
	if ephemeral != "" {
		fmt.Fprintf(stdout, "cairn: %s\n", ephemeral)
	}

	// STOPPING=1 as soon as the stop begins, before the services drain, and exactly once.
	var stopping sync.Once
	stop := func() { stopping.Do(func() { notify("STOPPING=1") }) }
	defer context.AfterFunc(ctx, stop)()
	err = runServices(ctx, svcs...)
	stop()
	return err
}

// ephemeralReason says why the appliance forgets what it learns at reboot, "" when cfg.DataDir
// is on a data disk; it logs it, with what the configuration allows.
func ephemeralReason(cfg Config, log *slog.Logger) string {
	if cfg.DataDir != "" {
		dev, err := appliance.DataDisk(cfg.DataDir)
		if err != nil {
			log.Warn("looking for the data disk", "data_dir", cfg.DataDir, "err", err)
		}
		if dev != "" {
			log.Info("state kept on the data disk", "data_dir", cfg.DataDir, "device", dev)
			return ""
		}
	}
	reason := "ephemeral: state is lost at reboot (no data disk at " + cfg.DataDir + ")"
	if cfg.DataDir == "" {
		reason = "ephemeral: state is lost at reboot (no data_dir)"
	}
	if cfg.AllowEphemeral {
		log.Warn(reason+"; provisioning anyway, as allow_ephemeral says", "data_dir", cfg.DataDir)
	} else {
		log.Warn(reason+"; no host is provisioned until there is one: cairn appliance data init DEVICE", "data_dir", cfg.DataDir)
	}
	return reason
}

// wiring is what Run hands the parts it starts.
type wiring struct {
	log      *slog.Logger
	notify   func(string) // sd_notify lines
	registry http.Handler // the store as a registry (/v2/)
	storeDir string       // the medium's store
	seed     string       // the site seed, "" when there is none
	// ephemeral says why the appliance forgets what it learns at reboot, "" when it does not.
	ephemeral string
}

// startConverging opens the state, seeds the site directory on first boot, and returns the
// converger and the handler that serves, on one port, the registry (/v2/), the iPXE scripts
// and netboot assets (/boot/), the agent API (/agent/v1/) and the operator API.
func startConverging(cfg Config, opts Options, w wiring) (state.Store, *converger, http.Handler, error) {
	if err := seedSite(cfg.SiteDir, w.seed); err != nil {
		return nil, nil, nil, err
	}
	if err := os.MkdirAll(filepath.Dir(cfg.State), 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("state: %w", err)
	}
	watcher, err := watch.New(watch.Config{Dir: cfg.SiteDir})
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := state.Open(cfg.State, state.Options{})
	if err != nil {
		return nil, nil, nil, err
	}
	conv := newConverger(watcher, st, w.log, w.notify)
	content := airgap.NewStores(w.storeDir, cfg.Upper)
	conv.applier.Images = func(img site.Image) (string, error) {
		a, err := content.ResolveImage(img.Name, img.Tag, digest.Digest(img.Digest))
		return a.Digest.String(), err
	}
	issuer := &token.Issuer{Store: st, Ephemeral: w.ephemeral != "" && !cfg.AllowEphemeral}
	bootH, err := boot.New(boot.Config{Store: st, Tokens: issuer, Content: content, Log: w.log})
	if err != nil {
		_ = st.Close()
		return nil, nil, nil, err
	}
	agentH, err := agents.New(agents.Config{Store: st, Content: content, Log: w.log, Site: func() *site.Site { return conv.Current().Site }})
	if err != nil {
		_ = st.Close()
		return nil, nil, nil, err
	}
	operator, err := api.New(api.Config{Store: st, Current: conv.Current, Log: w.log, Version: opts.Version, Ephemeral: w.ephemeral,
		Backup: conv.backup(st, cfg.Upper, filepath.Dir(cfg.State), opts.Version), Logs: agentH.Logs})
	if err != nil {
		_ = st.Close()
		return nil, nil, nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/v2/", w.registry)
	mux.Handle("/boot/", bootH)
	mux.Handle(agentapi.PathPrefix, agentH)
	mux.Handle("/", operator)
	return st, conv, mux, nil
}

// startPXE makes the DHCP and TFTP services of the site's provisioning network; they start
// serving once the converger gives them the site. Neither stops the daemon when the site's
// interface is missing: they say why in the log and try again.
// It returns the services, what each applied site must be told, and why each does not serve.
func startPXE(st state.Store, storeDir, listen string, log *slog.Logger) ([]named, []func(*site.Site), []func() string, error) {
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, nil, nil, err
	}
	d, err := dhcp.New(dhcp.Config{State: st, Wait: true, Log: log.With("service", "dhcp"),
		Boot: dhcp.Boot{HTTPBase: "http://:" + port, ScriptURL: boot.ScriptURL}})
	if err != nil {
		return nil, nil, nil, err
	}
	files, err := tftp.OpenStore(storeDir)
	if err != nil {
		return nil, nil, nil, err
	}
	t := newTFTPService(files, log.With("service", "tftp"))
	problem := func(what string, p func() string) func() string {
		return func() string {
			if msg := p(); msg != "" {
				return what + " not serving: " + strings.TrimPrefix(msg, strings.ToLower(what)+": ")
			}
			return ""
		}
	}
	return []named{{"dhcp", d}, {"tftp", t}}, []func(*site.Site){d.Update, t.Update},
		[]func() string{problem("DHCP", d.Problem), problem("TFTP", t.Problem)}, nil
}

// seedSite copies the seed into dir when dir does not exist yet (the appliance's first boot).
// An existing dir is never touched: it is the operator's.
func seedSite(dir, seed string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if _, err := os.Stat(seed); seed == "" || err != nil {
		// No seed: an empty site, whose load error (no site.toml) says what to do.
		return os.MkdirAll(dir, 0o755) //nolint:gosec // operators read and edit the site
	}
	tmp := dir + ".seeding"
	_ = os.RemoveAll(tmp)
	if err := os.CopyFS(tmp, os.DirFS(seed)); err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("copying the site seed %s to %s: %w", seed, dir, err)
	}
	return os.Rename(tmp, dir)
}

// locateStore resolves cfg.Store: an absolute path as is, else a path on the boot medium. It
// also resolves the site seed the same way ("" when there is none to find).
func locateStore(ctx context.Context, cfg Config, opts Options, n Notifier) (store, seed string, err error) {
	if filepath.IsAbs(cfg.Store) {
		if filepath.IsAbs(cfg.Site) {
			seed = cfg.Site
		}
		return cfg.Store, seed, nil
	}
	label := cfg.MediumLabel
	cmdline := opts.Cmdline
	if cmdline == "" {
		if b, err := os.ReadFile("/proc/cmdline"); err == nil {
			cmdline = string(b)
		}
	}
	if l, ok := appliance.KernelArg(cmdline, appliance.LabelArg); ok && l != "" {
		label = l
	}
	find := opts.FindMedium
	if find == nil {
		find = appliance.FindMedium
	}
	_, _ = n.Notify("STATUS=looking for the boot medium labelled " + label)
	fctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	medium, err := find(fctx, appliance.MediumConfig{Label: label})
	if err != nil {
		return "", "", err
	}
	dir := filepath.Join(medium, cfg.Store)
	if _, err := os.Stat(filepath.Join(dir, airgap.IndexFile)); err != nil {
		return "", "", fmt.Errorf("the boot medium %s (label %s) holds no store at %s: %w; was the ISO made by cairn build?", medium, label, cfg.Store, err)
	}
	if cfg.Site != "" {
		seed = cfg.Site
		if !filepath.IsAbs(seed) {
			seed = filepath.Join(medium, cfg.Site)
		}
	}
	return dir, seed, nil
}
