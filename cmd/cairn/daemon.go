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
)

func newDaemonCmd() *cobra.Command {
	var configPath, listen, store string
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run the appliance daemon: serve the boot medium's store as a registry",
		Long: `Run the appliance daemon, as cairn.service does on the appliance. It finds the boot
medium by its volume label, serves the store on it as a read-only container registry, tells
systemd it is ready (Type=notify) and feeds the watchdog while the registry answers.`,
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
			// distribution logs every request through logrus; only its warnings are worth keeping.
			logrus.SetOutput(cmd.ErrOrStderr())
			logrus.SetLevel(logrus.WarnLevel)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			return daemon.Run(ctx, cfg, daemon.Options{
				Stdout: cmd.OutOrStdout(),
				Log:    slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)),
				Reload: hup,
			})
		}),
	}
	cmd.Flags().StringVar(&configPath, "config", daemon.DefaultConfigPath, "daemon configuration file")
	cmd.Flags().StringVar(&listen, "listen", "", "registry address, overriding listen in the config (e.g. :5000)")
	cmd.Flags().StringVar(&store, "store", "", "store path on the medium, or an absolute path to serve a store from anywhere")
	return cmd
}
