package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/cairn-appliance/cairn/daemon"
	"github.com/cairn-appliance/cairn/daemon/journal"
)

func newDaemonCmd() *cobra.Command {
	var configPath, listen, store, siteDir, stateFile string
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run the appliance daemon: serve the store, converge the hosts on the site",
		Long: `Run the appliance daemon, as cairn.service does on the appliance. It finds the boot
medium by its volume label and serves the store on it as a read-only container registry. It
watches the site directory (site_dir; seeded from the medium on first boot), applies every valid
edit and keeps the last good site when an edit is invalid, publishing why. Beside the registry
(/v2/) the same port serves the operator API (/api/v1/...), Prometheus metrics (/metrics) and a
status page (/). It tells systemd it is ready (Type=notify-reload) once the site is applied,
answers systemctl reload by re-reading the site, and feeds the watchdog only while the registry
answers and the converging loop goes round.`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			cfg, err := daemon.LoadConfig(configPath)
			if errors.Is(err, fs.ErrNotExist) && !cmd.Flags().Changed("config") {
				cfg, err = daemon.DefaultConfig(), nil
			}
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("listen") {
				if listen == "" {
					return &failure{code: exitUsage, err: fmt.Errorf("--listen is empty; give an address such as :5000")}
				}
				cfg.Listen = listen
			}
			if cmd.Flags().Changed("store") {
				cfg.Store = store
			}
			if cmd.Flags().Changed("site-dir") {
				cfg.SiteDir = siteDir
			}
			if cmd.Flags().Changed("state") {
				cfg.State = stateFile
			}
			// distribution logs every request through logrus; only its warnings are worth keeping.
			logrus.SetOutput(cmd.ErrOrStderr())
			logrus.SetLevel(logrus.WarnLevel)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			return daemon.Run(ctx, cfg, daemon.Options{
				Stdout:  cmd.OutOrStdout(),
				Log:     journal.Logger(cmd.ErrOrStderr(), slog.LevelInfo),
				Reload:  hup,
				Version: version,
			})
		}),
	}
	cmd.Flags().StringVar(&configPath, "config", daemon.DefaultConfigPath, "daemon configuration file")
	cmd.Flags().StringVar(&listen, "listen", "", "registry address, overriding listen in the config (e.g. :5000)")
	cmd.Flags().StringVar(&store, "store", "", "store path on the medium, or an absolute path to serve a store from anywhere")
	cmd.Flags().StringVar(&siteDir, "site-dir", "", "the site directory to converge on, overriding site_dir (empty: serve the store only)")
	cmd.Flags().StringVar(&stateFile, "state", "", "the state file, overriding state in the config")
	return cmd
}
