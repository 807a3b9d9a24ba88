package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cairn-appliance/cairn/daemon/plan"
	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/site"
)

func newSiteCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "site",
		Short: "Check and inspect a site directory (site.toml, hosts/, roles/)",
		Args:  cobra.NoArgs, // an unknown sub-command is a usage error, not a request for help
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newSiteValidateCmd(), newSitePlanCmd(), newSiteShowCmd(), newSiteUnitsCmd(), newSiteSchemaCmd())
	return cmd
}

// exactDir accepts exactly one argument, the site directory.
func exactDir(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("%s takes one argument, the site directory (got %d)", cmd.CommandPath(), len(args))
	}
	return nil
}

func newSiteValidateCmd() *cobra.Command {
	format := "text"
	cmd := &cobra.Command{
		Use:   "validate DIR",
		Short: "Check a site directory and report every problem at once",
		Long: `Loads the site directory DIR and reports every problem it finds, one per line as
DIR/FILE:LINE:COLUMN: KEY: PROBLEM; HINT, so editors and CI can jump to it.

Exit status: 0 when the site is valid, 1 when it is not, 2 when the command line is wrong.

Formats: text (default), json (one object: valid, counts, errors with file, line, column, key,
message and hint), github (GitHub Actions ::error annotations).`,
		Example: `  cairn site validate ./site
  cairn site validate --format json ./site | jq '.errors[]'`,
		Args: exactDir,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if format != "text" && format != "json" && format != "github" {
				return &failure{code: exitUsage, err: fmt.Errorf("--format %q: expected text, json or github", format)}
			}
			return validate(cmd.OutOrStdout(), args[0], format)
		}),
	}
	cmd.Flags().StringVar(&format, "format", format, "output format: text, json or github")
	return cmd
}

// report is the JSON form of a validation.
type report struct {
	Valid      bool          `json:"valid"`
	Dir        string        `json:"dir"`
	Site       string        `json:"site,omitempty"`
	Hosts      int           `json:"hosts"`
	Roles      int           `json:"roles"`
	Containers int           `json:"containers"`
	Files      int           `json:"files"`
	Errors     []*site.Error `json:"errors"`
}

func validate(w io.Writer, dir, format string) error {
	s, err := site.Load(dir)
	var problems site.Errors
	if err != nil && !errors.As(err, &problems) {
		return err
	}
	rep := report{Valid: err == nil, Dir: dir, Errors: []*site.Error{}}
	for _, p := range problems {
		q := *p
		q.File = filepath.Join(dir, filepath.FromSlash(p.File))
		rep.Errors = append(rep.Errors, &q)
	}
	if s != nil {
		rep.Site, rep.Hosts, rep.Roles = s.Settings.Name, len(s.Hosts), len(s.Roles)
		for _, r := range s.Roles {
			rep.Containers += len(r.Containers)
			for _, c := range r.Containers {
				rep.Files += len(c.Files)
			}
		}
	}
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	case "github":
		for _, e := range rep.Errors {
			msg := e.Message
			if e.Key != "" {
				msg = e.Key + ": " + msg
			}
			if e.Hint != "" {
				msg += "; " + e.Hint
			}
			fmt.Fprintf(w, "::error file=%s,line=%d,col=%d,title=cairn site validate::%s\n",
				ghEscape(e.File, true), e.Line, e.Column, ghEscape(msg, false))
		}
	default:
		for _, e := range rep.Errors {
			fmt.Fprintln(w, e.Error())
		}
		if rep.Valid {
			fmt.Fprintf(w, "%s: site %q is valid: %d hosts, %d roles, %d containers, %d mounted files\n",
				dir, rep.Site, rep.Hosts, rep.Roles, rep.Containers, rep.Files)
		}
	}
	if !rep.Valid {
		if format == "text" {
			return fmt.Errorf("site %s is invalid: %d problem(s)", dir, len(rep.Errors))
		}
		return &failure{code: exitFailed, err: errSilent}
	}
	return nil
}

// ghEscape escapes a workflow-command value; properties also escape ':' and ','.
func ghEscape(s string, property bool) string {
	r := strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A")
	s = r.Replace(s)
	if property {
		s = strings.NewReplacer(":", "%3A", ",", "%2C").Replace(s)
	}
	return s
}

func newSiteShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show DIR",
		Short: "Print the hosts of a valid site with their effective settings",
		Args:  exactDir,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			s, err := site.Load(args[0])
			if err != nil {
				return fmt.Errorf("loading site %s:\n%w\nrun 'cairn site validate %s' for details", args[0], err, args[0])
			}
			return show(cmd.OutOrStdout(), s)
		}),
	}
}

func show(w io.Writer, s *site.Site) error {
	n := s.Network
	fmt.Fprintf(w, "site %s (%s)\n", s.Settings.Name, s.Settings.Domain)
	fmt.Fprintf(w, "network %s on %s, appliance %s, dhcp %s", n.CIDR, n.Interface, n.ApplianceIP, n.DHCP)
	if n.DHCP == "full" && n.DHCPRange != nil {
		fmt.Fprintf(w, " (discovery range %s-%s)", n.DHCPRange.Start, n.DHCPRange.End)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tMAC\tIP\tOS\tDISK\tPROVISION\tROLES\tCONTAINERS")
	for _, h := range s.Hosts {
		var containers []string
		for _, r := range h.Roles {
			for _, c := range s.Roles[r].Containers {
				containers = append(containers, c.Name)
			}
		}
		ip := "dhcp"
		if h.IP.IsValid() {
			ip = h.IP.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", h.Name, h.MAC, ip, h.OS, h.Disk, h.Provision,
			dash(strings.Join(h.Roles, ",")), dash(strings.Join(containers, ",")))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newSiteSchemaCmd() *cobra.Command {
	kind := "all"
	cmd := &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of site files, for editors and other tools",
		Long: `Prints a JSON Schema (draft-07). --kind site, host or role prints the schema of one file
kind (site.toml, hosts/*.toml, roles/*.toml), which is what editors such as taplo use;
--kind all (the default) prints the schema of a whole site directory as one JSON document:
{"site": <site.toml>, "hosts": {NAME: <host>}, "roles": {NAME: <role>}}.`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			doc, err := site.Schema(kind)
			if err != nil {
				return &failure{code: exitUsage, err: fmt.Errorf("--kind: %w", err)}
			}
			_, err = cmd.OutOrStdout().Write(doc)
			return err
		}),
	}
	cmd.Flags().StringVar(&kind, "kind", kind, "all, site, host or role")
	return cmd
}

func newSitePlanCmd() *cobra.Command {
	var stateFile, format, server string
	cmd := &cobra.Command{
		Use:   "plan DIR",
		Short: "Show what the daemon would change to make the hosts match the site",
		Long: `Compares the site directory DIR with the state the daemon recorded (--state, the daemon's
state file, opened read-only) and prints every change per host: + add, ~ change or new
containers, -/+ re-provision (destructive: the disk is written again), - remove. A plan that
removes more than half of the hosts, or every container, is refused unless the site sets
allow_mass_removal = true.

With --server the recorded state comes from a running daemon's API instead (the daemon holds
its state file). Without either, the plan is against an empty state: every host is new.

Exit status: 0 no changes, 2 changes, 1 an invalid site, a refused plan or another error.`,
		Example: `  cairn site plan ./site --state /var/lib/cairn/state.db`,
		Args:    exactDir,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if format != "text" && format != "json" {
				return &failure{code: exitUsage, err: fmt.Errorf("--format %q: expected text or json", format)}
			}
			s, err := site.Load(args[0])
			if err != nil {
				var problems site.Errors
				if errors.As(err, &problems) {
					for _, e := range problems {
						q := *e
						q.File = filepath.Join(args[0], filepath.FromSlash(e.File))
						fmt.Fprintln(cmd.OutOrStdout(), q.Error())
					}
					return fmt.Errorf("site %s is invalid: %d problem(s)", args[0], len(problems))
				}
				return err
			}
			var recorded []state.Host
			if stateFile != "" && server != "" {
				return &failure{code: exitUsage, err: errors.New("give --state or --server, not both")}
			}
			if server != "" {
				c, err := client(server)
				if err != nil {
					return err
				}
				if recorded, err = c.Recorded(cmd.Context()); err != nil {
					return err
				}
			}
			if stateFile != "" {
				st, err := state.Open(stateFile, state.Options{ReadOnly: true})
				if err != nil {
					return err
				}
				defer st.Close()
				if err := st.View(cmd.Context(), func(tx state.Tx) error {
					recorded, err = tx.Hosts()
					return err
				}); err != nil {
					return err
				}
			}
			p, err := plan.Compute(s, recorded)
			if err != nil {
				return err
			}
			if format == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				err = enc.Encode(p)
			} else {
				err = p.Print(cmd.OutOrStdout())
			}
			switch {
			case err != nil:
				return err
			case p.Refused != "":
				return &failure{code: exitFailed, err: errors.New("the plan is refused: " + p.Refused)}
			case !p.Empty():
				return &failure{code: exitChanges, err: errSilent}
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&stateFile, "state", "", "the daemon's state file (opened read-only)")
	cmd.Flags().StringVar(&server, "server", "", "plan against a running daemon's state, through its API (e.g. http://appliance:5000)")
	cmd.Flags().StringVar(&format, "format", "text", "output format: text or json")
	return cmd
}
