package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/cairn-appliance/cairn/appliance"
)

func newApplianceDataCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "data",
		Short: "Prepare the appliance's data disk (" + appliance.DataLabel + "), which keeps its state across reboots",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var force bool
	initCmd := &cobra.Command{
		Use:   "init DEVICE",
		Short: "Make DEVICE the data disk: an ext4 file system labelled " + appliance.DataLabel,
		Long: `Makes DEVICE (a disk, a partition, or an image file for a VM) the appliance's data disk:
an ext4 file system labelled ` + appliance.DataLabel + `, which the appliance mounts at ` + appliance.DataDir + ` at
boot, before cairn.service starts, to keep its state, its site and its upper store across
reboots. The kernel argument ` + appliance.DataArg + `=DEVICE (or LABEL=, UUID=) names another device instead.

It is destructive, so it is explicit: a device that holds any file system or partition table
is refused, with what was found, unless --force is given. A mounted device is always refused.`,
		Example: `  cairn appliance data init /dev/vdb
  cairn appliance data init --force /dev/disk/by-id/ata-SAMSUNG_SSD_870_S5Y1NX0R
  truncate -s 4G data.img && cairn appliance data init data.img   # a VM's data disk`,
		Args: cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			dev := args[0]
			if err := appliance.InitData(cmd.Context(), dev, force); err != nil {
				if errors.Is(err, appliance.ErrNotBlank) {
					return &failure{code: exitFailed, err: err}
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ext4 file system labelled %s; the appliance mounts it at %s when it boots with it\n",
				dev, appliance.DataLabel, appliance.DataDir)
			return nil
		}),
	}
	initCmd.Flags().BoolVar(&force, "force", false, "erase whatever DEVICE holds")

	gen := &cobra.Command{
		Use:    "generator NORMAL-DIR [EARLY-DIR LATE-DIR]",
		Short:  "The systemd generator that writes the data disk's mount unit (run by systemd at boot)",
		Hidden: true,
		Args:   cobra.RangeArgs(1, 3),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			cmdline, err := os.ReadFile("/proc/cmdline")
			if err != nil {
				return err
			}
			return appliance.DataGenerator(args[0], string(cmdline))
		}),
	}
	cmd.AddCommand(initCmd, gen)
	return cmd
}
