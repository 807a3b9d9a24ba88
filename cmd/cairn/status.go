package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	agentapi "github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/daemon"
	"github.com/cairn-appliance/cairn/daemon/api"
	"github.com/cairn-appliance/cairn/site"
)

// defaultServer is the daemon's API as seen from the appliance itself.
func defaultServer() string {
	cfg, err := daemon.LoadConfig(daemon.DefaultConfigPath)
	if err != nil {
		cfg = daemon.DefaultConfig()
	}
	host := cfg.Listen
	if strings.HasPrefix(host, ":") {
		host = "127.0.0.1" + host
	}
	return "http://" + host
}

func addServerFlag(cmd *cobra.Command, server *string) {
	cmd.Flags().StringVar(server, "server", "", "the daemon's address (default: from /etc/cairn/daemon.toml, else http://127.0.0.1:5000)")
}

// client returns a client of the daemon's API at server, or at defaultServer when it is "".
func client(server string) (*api.Client, error) {
	if server == "" {
		server = defaultServer()
	}
	c, err := api.NewClient(server, nil)
	if err != nil {
		return nil, &failure{code: exitUsage, err: fmt.Errorf("--server: %w", err)}
	}
	return c, nil
}

func newStatusCmd() *cobra.Command {
	var server string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every host the daemon knows: phase, progress, address, last event",
		Args:  cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			c, err := client(server)
			if err != nil {
				return err
			}
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			hosts, err := c.Hosts(cmd.Context())
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "site %s: generation %d applied", st.Site, st.Generation.Applied)
			if st.Generation.Attempted != st.Generation.Applied {
				fmt.Fprintf(w, ", %d attempted", st.Generation.Attempted)
			}
			fmt.Fprintf(w, ", %d hosts\n", st.Hosts)
			if st.Ephemeral != "" {
				fmt.Fprintf(w, "%s; cairn appliance data init DEVICE prepares a data disk\n", st.Ephemeral)
			}
			if st.LoadError != "" {
				fmt.Fprintf(w, "the last site edit was not applied (the previous site still runs):\n%s\n", st.LoadError)
			}
			fmt.Fprintln(w)
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "HOST\tPHASE\tPROGRESS\tCONTAINERS\tIP\tMAC\tLAST EVENT")
			for _, h := range hosts {
				progress, last := "-", "-"
				if h.Phase == "provisioning" {
					progress = strconv.Itoa(h.Progress) + "%"
					if h.Message != "" {
						progress += " " + h.Message // the agent's last word: its step
					}
				}
				if h.LastEvent != nil {
					last = h.LastEvent.Time.Local().Format("2006-01-02 15:04:05") + " " + h.LastEvent.Message
				}
				phase := string(h.Phase)
				if h.Reason != "" {
					phase += " (" + h.Reason + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, phase, progress, containerSummary(h.Agent), dash(h.IP), h.MAC, last)
			}
			return tw.Flush()
		}),
	}
	addServerFlag(cmd, &server)
	return cmd
}

func newHostLogsCmd() *cobra.Command {
	var server string
	var follow bool
	var tail int
	cmd := &cobra.Command{
		Use:   "logs NAME [CONTAINER]",
		Short: "Show a container's logs, streamed from its host through the appliance; without CONTAINER, list the host's containers",
		Long: `Asks the host's cairn-agent for the output of one of its containers (podman logs) and
prints it as it comes: the agent sends it to the appliance, so the host needs no open port.
Run it on the appliance: logs may hold secrets, and the daemon serves them to the appliance
itself only. Without CONTAINER it lists the containers the host's agent last reported.`,
		Example: `  cairn host logs web-01
  cairn host logs web-01 web --tail 100
  cairn host logs web-01 web -f`,
		Args: cobra.RangeArgs(1, 2),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			c, err := client(server)
			if err != nil {
				return err
			}
			if len(args) == 1 {
				d, err := c.Host(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				if len(d.Agent) == 0 {
					return fmt.Errorf("host %s's agent has not reported yet (phase %s): no containers to show", d.Name, d.Phase)
				}
				writeContainers(cmd.OutOrStdout(), d.Agent, d.ContainersGeneration, d.AgentSeen)
				return nil
			}
			return c.Logs(cmd.Context(), args[0], args[1], follow, tail, cmd.OutOrStdout())
		}),
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output until interrupted")
	cmd.Flags().IntVar(&tail, "tail", 0, "only the last N lines (0: all)")
	addServerFlag(cmd, &server)
	return cmd
}

// containerSummary sums up a host agent's report (agent/api.HostStatus) for cairn status:
// how many of its containers run healthy, "-" without a report.
func containerSummary(raw json.RawMessage) string {
	var st agentapi.HostStatus
	if len(raw) == 0 || json.Unmarshal(raw, &st) != nil {
		return "-"
	}
	ok := 0
	for _, c := range st.Containers {
		if c.State == "running" && (c.Health == "" || c.Health == "healthy") {
			ok++
		}
	}
	return fmt.Sprintf("%d/%d ok (gen %d)", ok, len(st.Containers), st.Applied)
}

// writeContainers prints a host agent's report for cairn host show.
func writeContainers(w io.Writer, raw json.RawMessage, want int64, seen time.Time) {
	var st agentapi.HostStatus
	if json.Unmarshal(raw, &st) != nil {
		return
	}
	fmt.Fprintf(w, "  agent       %s: generation %d applied of %d", st.State, st.Applied, want)
	if st.Attempted != st.Applied {
		fmt.Fprintf(w, " (%d tried)", st.Attempted)
	}
	if st.Reason != "" {
		fmt.Fprintf(w, ": %s", st.Reason)
	}
	if !seen.IsZero() {
		fmt.Fprintf(w, "; reported %s", seen.Local().Format(time.RFC3339))
	}
	fmt.Fprintln(w)
	if len(st.Containers) == 0 {
		return
	}
	fmt.Fprintln(w, "\ncontainers:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tSTATE\tHEALTH\tRESTARTS\tSTARTED\tIMAGE DIGEST")
	for _, c := range st.Containers {
		started := "-"
		if !c.Started.IsZero() {
			started = c.Started.Local().Format("2006-01-02 15:04:05")
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%s\n", c.Name, c.State, dash(c.Health), c.Restarts, started, dash(shortDigest(c.Digest)))
	}
	_ = tw.Flush()
}

func newHostCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "host",
		Short: "Look at one host, or ask for it to be provisioned again",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var server string
	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a host as the daemon knows it, with its recent events",
		Args:  cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			c, err := client(server)
			if err != nil {
				return err
			}
			d, err := c.Host(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "host %s\n  phase       %s", d.Name, d.Phase)
			if d.Reason != "" {
				fmt.Fprintf(w, " (%s)", d.Reason)
			}
			fmt.Fprintf(w, "\n  mac         %s\n  ip          %s\n  provision   %d\n  containers  generation %d\n  updated     %s\n",
				d.MAC, dash(d.IP), d.Provision, d.ContainersGeneration, d.Updated.Local().Format(time.RFC3339))
			if d.Message != "" {
				fmt.Fprintf(w, "  agent       %s", d.Message)
				if d.Phase == "provisioning" {
					fmt.Fprintf(w, " (%d%%)", d.Progress)
				}
				fmt.Fprintln(w)
			}
			if len(d.Spec) > 0 {
				fmt.Fprintf(w, "  spec        %s\n", d.Spec)
			}
			if len(d.Agent) > 0 {
				writeContainers(w, d.Agent, d.ContainersGeneration, d.AgentSeen)
			}
			if d.Snippet != "" {
				fmt.Fprintf(w, "\nThis machine is not in the site. To provision it, save this as hosts/NAME.toml in the site:\n\n%s", d.Snippet)
			}
			fmt.Fprintln(w, "\nevents:")
			for _, e := range d.Events {
				fmt.Fprintf(w, "  %s  %-18s %s\n", e.Time.Local().Format("2006-01-02 15:04:05"), e.Kind, e.Message)
			}
			return nil
		}),
	}
	addServerFlag(show, &server)
	var siteDir string
	reprov := &cobra.Command{
		Use:   "reprovision NAME",
		Short: "Raise a host's provision counter in the site, which asks for its disk to be written again",
		Long: `The site directory is the source of truth, so a re-provision is a site edit: this raises
provision in hosts/NAME.toml by one (adding provision = 1 when it is not there), keeping the
rest of the file as it is. The daemon sees the edit and re-provisions the host; cairn site plan
shows it first as a destructive change. Commit the edit if the site lives in git.`,
		Example: `  cairn host reprovision web-01 --site /var/lib/cairn/site`,
		Args:    cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if siteDir == "" {
				return &failure{code: exitUsage, err: errors.New("--site DIR is required: the site directory to edit")}
			}
			n, file, err := site.RaiseProvision(siteDir, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: provision = %d; the daemon will re-provision %s (its disk is written again)\n", file, n, args[0])
			return nil
		}),
	}
	reprov.Flags().StringVar(&siteDir, "site", "", "the site directory")
	cmd.AddCommand(show, reprov, newHostLogsCmd())
	return cmd
}
