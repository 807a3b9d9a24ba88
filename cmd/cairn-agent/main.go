// Command cairn-agent runs on the hosts cairn provisions. As /init of the netboot initramfs
// (package agent/initramfs) it reports the machine's inventory and, in provision mode, fetches
// its plan and carries it out: the OS image, the partitions and the configdrive onto the
// machine's disk (package agent/netboot). On the installed OS, in host mode (package
// agent/host), it keeps the containers the appliance wants running, as Podman Quadlet units.
// It is built static (CGO_ENABLED=0) and imports no registry or build code.
//
//	cairn-agent version     its version
//	cairn-agent inventory   this machine's inventory, as the agent would report it (JSON)
//	cairn-agent image write URL DEVICE --sha256 HEX [--format F] [--size N]
//	                        write an OS image onto a disk by hand (package agent/image), from
//	                        any Linux live system: to recover a machine without the daemon
//	cairn-agent host run [--config FILE]
//	                        host mode, the service: long-poll the host's desired containers,
//	                        apply each generation, report the status
//	cairn-agent host install [--config FILE]
//	                        write, enable and start cairn-agent.service (host run)
//	cairn-agent host status [--json]
//	                        the applied generation and the containers cairn owns here
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/cairn-appliance/cairn/agent/inventory"
	"github.com/cairn-appliance/cairn/agent/netboot"
)

// version is set at build time from VERSION and git describe (see Makefile).
var version = "dev"

const usage = `usage: cairn-agent version | inventory | image write URL DEVICE --sha256 HEX [--format F] [--size N]
       cairn-agent host run|install|status [--config FILE]
(as /init of the netboot initramfs it runs the mode the kernel command line names)`

func main() {
	if os.Getpid() == 1 {
		netboot.Init(version) // never returns
	}
	switch {
	case len(os.Args) == 2 && os.Args[1] == "version":
		fmt.Printf("cairn-agent %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	case len(os.Args) == 2 && os.Args[1] == "inventory":
		inv, err := inventory.Collect(inventory.Config{AgentVersion: version})
		if err != nil {
			fmt.Fprintln(os.Stderr, "cairn-agent:", err)
			os.Exit(1)
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(inv)
	case len(os.Args) >= 2 && os.Args[1] == "host":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := hostCommand(ctx, os.Args[2:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	case len(os.Args) >= 2 && os.Args[1] == "image":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := imageCommand(ctx, os.Args[2:], os.Stderr)
		stop()
		os.Exit(code)
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
}
