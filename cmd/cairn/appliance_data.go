package main

import "github.com/spf13/cobra"

func newApplianceDataCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "data",
		Short: "Prepare and inspect the appliance's data disk (CAIRN-DATA)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	return cmd
}
