package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/agent/host"
)

const hostUsage = `usage: cairn-agent host run [--config FILE]
       cairn-agent host install [--config FILE]
       cairn-agent host status [--json]

run      keep this host's containers as the appliance wants them (the service)
install  write, enable and start the service cairn-agent.service, which runs "host run"
status   the generation applied, the last attempt, and the containers cairn owns here

The agent's file (the appliance's URL, this host's name and token) is read from the
configdrive partition (LABEL=cidata, file ` + api.AgentFile + `) unless --config names a JSON file.`

// hostCommand runs `cairn-agent host ...` and returns the exit code.
func hostCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, hostUsage)
		return 2
	}
	fs := flag.NewFlagSet("cairn-agent host "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, hostUsage) }
	config := fs.String("config", "", "the agent's file, JSON (default: the configdrive's)")
	asJSON := fs.Bool("json", false, "status: print the status as the agent reports it (JSON)")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "cairn-agent host %s: unexpected argument %q\n%s\n", args[0], fs.Arg(0), hostUsage)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = hostRun(ctx, *config, stderr)
	case "install":
		err = hostInstall(ctx, *config)
	case "status":
		err = hostStatus(ctx, *asJSON, stdout)
	default:
		fmt.Fprintf(stderr, "cairn-agent host: unknown subcommand %q\n%s\n", args[0], hostUsage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "cairn-agent host %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func hostRun(ctx context.Context, config string, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, nil)) // journald takes the service's stderr
	source := host.FindConfigDrive
	if config != "" {
		// A file named on the command line must be right now; the configdrive may take
		// a moment to appear, and is read again until it does.
		if _, err := host.ReadAgentFile(config); err != nil {
			return err
		}
		source = func() (api.HostAgent, error) { return host.ReadAgentFile(config) }
	}
	paths := host.DefaultPaths()
	unlock, err := host.Lock(paths.Lock)
	if err != nil {
		return err
	}
	defer unlock()
	sd, err := host.ConnectSystemd(ctx)
	if err != nil {
		return err
	}
	defer sd.Close()
	a, err := host.New(host.Config{Paths: paths, Systemd: sd, Podman: &host.PodmanCLI{}, Log: log, AgentVersion: version})
	if err != nil {
		return err
	}
	log.Info("cairn-agent host mode", "version", version)
	return host.Run(ctx, host.RunConfig{Agent: a, Source: source, Log: log})
}

func hostInstall(ctx context.Context, config string) error {
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	if bin, err = filepath.EvalSymlinks(bin); err != nil {
		return err
	}
	var args []string
	if config != "" {
		abs, err := filepath.Abs(config)
		if err != nil {
			return err
		}
		if _, err := host.ReadAgentFile(abs); err != nil {
			return err
		}
		args = []string{"--config", abs}
	}
	sd, err := host.ConnectSystemd(ctx)
	if err != nil {
		return err
	}
	defer sd.Close()
	return host.Install(ctx, sd, host.ServiceUnitPath, bin, args...)
}

func hostStatus(ctx context.Context, asJSON bool, stdout io.Writer) error {
	sd, err := host.ConnectSystemd(ctx)
	if err != nil {
		return err
	}
	defer sd.Close()
	a, err := host.New(host.Config{Systemd: sd, Podman: &host.PodmanCLI{}, AgentVersion: version})
	if err != nil {
		return err
	}
	st, serr := a.Status(ctx)
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return err
		}
		return serr
	}
	if err := host.PrintStatus(stdout, st); err != nil {
		return err
	}
	if at := a.LastAttempt(); !at.Time.IsZero() {
		fmt.Fprintf(stdout, "\nlast attempt: generation %d at %s", at.Generation, at.Time.Local().Format("2006-01-02 15:04:05"))
		if at.Failed {
			fmt.Fprintf(stdout, ", failed: %s", at.Reason)
		}
		fmt.Fprintln(stdout)
	}
	return serr
}
