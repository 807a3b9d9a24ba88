package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-appliance/cairn/daemon"
	"github.com/cairn-appliance/cairn/daemon/api"
	"github.com/cairn-appliance/cairn/daemon/backup"
)

func newApplianceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "appliance",
		Short: "Look after the appliance itself: its data disk, backup and restore",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newApplianceDataCmd(), newApplianceBackupCmd(), newApplianceRestoreCmd())
	return cmd
}

// applianceConfig reads the daemon's configuration for its paths; without the default file,
// the defaults.
func applianceConfig(cmd *cobra.Command, path string) (daemon.Config, error) {
	cfg, err := daemon.LoadConfig(path)
	if errors.Is(err, fs.ErrNotExist) && !cmd.Flags().Changed("config") {
		return daemon.DefaultConfig(), nil
	}
	return cfg, err
}

// localServer is the daemon's API at its listen address, as reached from the appliance.
func localServer(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

func newApplianceBackupCmd() *cobra.Command {
	var configPath, server string
	cmd := &cobra.Command{
		Use:   "backup FILE",
		Short: "Write one archive of the appliance's state, site and upper store to FILE (- for stdout)",
		Long: `Writes one archive (a zstd-compressed tar) of the appliance: its state file, its site
directory and its upper store, with a manifest of every entry's size and sha256. The store on
the boot medium is not in it (the medium carries it), nor are the site's hidden files (.git)
and editor backups.

While the daemon runs, the archive comes from it, on the appliance itself only: the state and
the site are taken together between two loads of the site, so they match. When no daemon
answers, the files are read directly (the paths come from the daemon's configuration).

FILE is written whole or not at all, mode 0600 (the archive holds token hashes); the archive is
read back as it is written and checked against its manifest. The same state, site and store
give a byte-identical archive. Put it back with cairn appliance restore.`,
		Example: `  cairn appliance backup /root/cairn-$(date +%F).tar.zst
  cairn appliance backup - | ssh backup-host 'cat > appliance.tar.zst'`,
		Args: cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			cfg, err := applianceConfig(cmd, configPath)
			if err != nil {
				return err
			}
			start := time.Now()
			out, msgs := io.Writer(cmd.OutOrStdout()), cmd.OutOrStdout()
			var file *backup.ArchiveFile
			if args[0] == "-" {
				msgs = cmd.ErrOrStderr()
			} else {
				if file, err = backup.CreateArchive(args[0]); err != nil {
					return err
				}
				out = file
			}
			v := backup.NewVerifier()
			from, err := writeBackup(cmd, cfg, server, io.MultiWriter(out, v))
			m, verr := v.Close()
			if err == nil {
				err = verr
			}
			if err == nil && file != nil {
				err = file.Commit()
			} else if file != nil {
				file.Abort()
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(msgs, "%s: %d bytes, sha256 %s, in %v (%s)\n", args[0], v.Size(), v.SHA256(), time.Since(start).Round(time.Millisecond), from)
			fmt.Fprintf(msgs, "  state: generation %d, %d hosts, %d events; site: %d files; upper store: %d files, %d blobs\n",
				m.State.Generation.Applied, m.State.Hosts, m.State.Events, m.Files(backup.SiteDir), m.Files(backup.StoreDir), m.Blobs())
			if !m.SiteMatches() {
				fmt.Fprintf(msgs, "  the site was edited after the state last loaded it (generation %d): a daemon started on this backup loads the edit\n", m.State.Generation.Attempted)
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&configPath, "config", daemon.DefaultConfigPath, "the daemon's configuration, for its listen address and paths")
	cmd.Flags().StringVar(&server, "server", "", "the daemon's address on this host (default: from the configuration's listen)")
	return cmd
}

// writeBackup writes the archive from the running daemon or, when none answers at the address
// the configuration gives, from the files. It says which.
func writeBackup(cmd *cobra.Command, cfg daemon.Config, server string, w io.Writer) (string, error) {
	explicit := server != ""
	if !explicit {
		server = localServer(cfg.Listen)
	}
	c, err := client(server)
	if err != nil {
		return "", err
	}
	_, err = c.Backup(cmd.Context(), w)
	if err == nil {
		return "from the daemon at " + server, nil
	}
	if explicit || !api.Unreachable(err) {
		return "", err
	}
	// No daemon answers: it is stopped, and the files are there to read.
	t := backup.Target{State: cfg.State, Site: cfg.SiteDir, Store: cfg.Upper}
	if _, err := backup.FromFiles(cmd.Context(), w, t, version); err != nil {
		return "", fmt.Errorf("no daemon answers at %s, and reading its files: %w", server, err)
	}
	return "from the files: no daemon answers at " + server, nil
}

func newApplianceRestoreCmd() *cobra.Command {
	var configPath string
	var force bool
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Put back the state, site and upper store from a backup archive (- for stdin); the daemon must be stopped",
		Long: `Puts back what cairn appliance backup wrote: the state file, the site directory and the
upper store, at the paths of the daemon's configuration (state, site_dir, upper).

The archive is read whole into a temporary directory beside them, and every entry is checked
against the manifest (size and sha256; nothing missing, nothing extra). An archive that fails
a check is refused, naming each entry that fails, and nothing is changed. Only then are the
state file, the site and the upper store moved into place, and what they replace removed.

The daemon must be stopped (systemctl stop cairn): a state file in use is refused. A state file,
a site or an upper store that already holds anything is replaced only with --force. The site's
.git is not in an archive: clone the site's repository again if the site lives in git.`,
		Example: `  systemctl stop cairn
  cairn appliance restore /root/cairn-2026-12-01.tar.zst
  systemctl start cairn`,
		Args: cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			cfg, err := applianceConfig(cmd, configPath)
			if err != nil {
				return err
			}
			in := cmd.InOrStdin()
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			start := time.Now()
			t := backup.Target{State: cfg.State, Site: cfg.SiteDir, Store: cfg.Upper}
			res, err := backup.Restore(cmd.Context(), in, t, force)
			if err != nil {
				return err
			}
			m, sum, w := res.Manifest, res.Summary, cmd.OutOrStdout()
			fmt.Fprintf(w, "restored %s (written by cairn %s) in %v:\n", args[0], m.Cairn, time.Since(start).Round(time.Millisecond))
			fmt.Fprintf(w, "  state %s: generation %d (%d attempted), %d hosts, %d events\n", t.State, sum.Generation.Applied, sum.Generation.Attempted, sum.Hosts, sum.Events)
			fmt.Fprintf(w, "  site %s: %d files\n", t.Site, m.Files(backup.SiteDir))
			if t.Store != "" {
				fmt.Fprintf(w, "  upper store %s: %d files, %d blobs\n", t.Store, m.Files(backup.StoreDir), m.Blobs())
			}
			if !m.SiteMatches() {
				fmt.Fprintf(w, "the site was edited after the state last loaded it (generation %d): the daemon loads the edit when it starts\n", sum.Generation.Attempted)
			}
			fmt.Fprintln(w, "start the daemon: systemctl start cairn")
			return nil
		}),
	}
	cmd.Flags().StringVar(&configPath, "config", daemon.DefaultConfigPath, "the daemon's configuration, for the paths to restore to")
	cmd.Flags().BoolVar(&force, "force", false, "replace a state file, site or upper store already there")
	return cmd
}
