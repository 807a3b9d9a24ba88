package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-appliance/cairn/agent/initramfs"
	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/build"
	"github.com/cairn-appliance/cairn/site/tomlpos"
)

func newBuildCmd() *cobra.Command {
	var (
		o       build.Options
		verbose bool
	)
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Build the signed, de-duplicated store, and the bootable ISO, that build.toml describes",
		Long: `Reads build.toml, resolves every image and source (pinned in build.lock beside it), plans
the sizes and checks free space before fetching anything, then fetches into the download cache
and writes the signed store (bundle.json, bundle.sig) to the output directory.

With --iso it then masters the bootable hybrid ISO (BIOS and UEFI, DVD or dd to USB): the
appliance OS base (built from appliance/ once, or [appliance] base), this cairn, the store and
the site seed. The store appears at -o only when it is complete. The cache keeps every verified blob, so a
rebuild downloads nothing it already has, and partial downloads, so an interrupted build
resumes them. SOURCE_DATE_EPOCH makes the store reproducible.`,
		Example: `  cairn build -f build.toml -o out/store
  cairn build --plan                 # sizes and free space, nothing fetched
  cairn build --locked -o out/store  # exactly what build.lock pins`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if !o.PlanOnly && o.Output == "" {
				return &failure{code: exitUsage, err: errors.New("-o DIR is required (or --plan)")}
			}
			created, err := airgap.SourceDateEpoch()
			if err != nil {
				return &failure{code: exitUsage, err: err}
			}
			o.Created = created
			o.Stdout = cmd.OutOrStdout()
			o.Progress = cmd.ErrOrStderr()
			o.Terminal = build.IsTerminal(cmd.ErrOrStderr())
			if verbose {
				o.Log = cmd.ErrOrStderr()
			}
			res, err := build.Run(cmd.Context(), o)
			var errs tomlpos.Errors
			if errors.As(err, &errs) {
				for _, e := range errs {
					fmt.Fprintln(cmd.OutOrStdout(), e.Error())
				}
				return fmt.Errorf("%s: %d problem(s)", o.Config, len(errs))
			}
			if err != nil {
				if res != nil && res.Plan != nil && errors.Is(err, build.ErrNoSpace) {
					_ = res.Plan.Print(cmd.OutOrStdout())
				}
				return err
			}
			if o.PlanOnly {
				return nil
			}
			t := res.Index.Totals
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %d artifacts, %d blobs, %s stored (%s before de-duplication); downloaded %d blobs (%s), %d from the cache\n",
				o.Output, t.Artifacts, t.Blobs, build.FormatBytes(t.StoredBytes), build.FormatBytes(t.Bytes), res.BlobsFetched, build.FormatBytes(res.BlobBytes), res.BlobsCached)
			if a := res.Agent; a != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "agent: kernel %s, %d modules, %d firmware file(s); %s %s (gzip), made in %s\n",
					a.KernelVersion, len(a.Modules), len(a.Firmware), initramfs.InitramfsArtifact, build.FormatBytes(a.InitramfsSize), a.Took.Round(time.Millisecond))
				for _, n := range a.Notes() {
					fmt.Fprintln(cmd.OutOrStdout(), "note: "+n)
				}
			}
			if res.ISO != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %s, sha256 %s\n", res.ISO.Path, build.FormatBytes(res.ISO.Size), res.ISO.SHA256)
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVarP(&o.Config, "file", "f", "build.toml", "the build file")
	f.StringVarP(&o.Output, "output", "o", "", "directory to write the store to (must not exist or be empty)")
	f.StringVar(&o.CacheDir, "cache", "", "download cache directory (default $XDG_CACHE_HOME/cairn or ~/.cache/cairn)")
	f.BoolVar(&o.Locked, "locked", false, "build only what build.lock pins; fail on anything it does not")
	f.BoolVar(&o.PlanOnly, "plan", false, "print what would be fetched and stored, with sizes, and check free space; fetch no blob")
	f.IntVar(&o.Jobs, "jobs", 4, "artifacts fetched at once")
	f.StringVar(&o.ISO, "iso", "", "also master a bootable hybrid ISO (DVD or dd to USB) of the appliance and the store at this path")
	f.StringVar(&o.VolumeLabel, "label", "", "the ISO's volume label (A-Z, 0-9, _; default CAIRN)")
	f.StringVar(&o.CairnBinary, "cairn-binary", "", "the cairn executable the appliance runs (default: this one)")
	f.StringVar(&o.AgentBinary, "agent-binary", "", "the static cairn-agent [agent] carries when build.toml's agent.binary names none (default: cairn-agent beside cairn)")
	f.BoolVarP(&verbose, "verbose", "v", false, "show the output of the tools that build the appliance base and master the ISO")
	return cmd
}
