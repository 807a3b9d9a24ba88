package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// Exit codes shared by every command.
const (
	exitOK     = 0
	exitFailed = 1 // the command ran and the answer is "no" (invalid site, failed check), or it failed
	exitUsage  = 2 // the command line itself is wrong

	exitChanges = 2 // plan commands: there are changes (as terraform plan -detailed-exitcode)
)

// failure is an error from running a command, as opposed to an error in the command line.
type failure struct {
	code int
	err  error
}

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

// errSilent is a failure whose explanation the command has already printed.
var errSilent = errors.New("")

// runE marks the errors of a command's work so that main tells them from usage errors.
func runE(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := fn(cmd, args); err != nil {
			var f *failure
			if errors.As(err, &f) {
				return err
			}
			return &failure{code: exitFailed, err: err}
		}
		return nil
	}
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "cairn",
		Short: "Build offline appliances and converge racks of hosts from them",
		Long: `cairn builds one bootable ISO that carries an appliance OS and every container image,
OS image and netboot asset a site needs, and runs the appliance that provisions the site's
hosts from it, with no outside network.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w\nrun '%s --help' for usage", err, cmd.CommandPath())
	})
	root.AddCommand(newVersionCmd(), newSiteCmd(), newBuildCmd(), newBundleCmd(), newDaemonCmd(), newStatusCmd(), newHostCmd(), newApplianceCmd())
	return root
}

// run executes the command line args and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var f *failure
	if !errors.As(err, &f) {
		fmt.Fprintf(stderr, "cairn: %v\n", err)
		return exitUsage
	}
	if !errors.Is(err, errSilent) {
		fmt.Fprintf(stderr, "cairn: %v\n", err)
	}
	return f.code
}
