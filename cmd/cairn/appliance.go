package main

import "github.com/spf13/cobra"

func newApplianceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "appliance",
		Short: "Look after the appliance itself: its data disk, backup and restore",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newApplianceDataCmd())
	return cmd
}
