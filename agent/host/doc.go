// Package host is cairn-agent's host mode: on a provisioned host it keeps the containers the
// appliance wants running, as Podman Quadlet units under systemd (DESIGN decision 9).
//
// # Applying a generation
//
// Agent.Apply takes the host's Desired (agent/api) and, unless it is the one applied already
// (compared with the agent's saved state, so a restart of the agent or the same Desired again
// does nothing), goes through these steps:
//
//  1. render the units, config files and registries.conf drop-in (package agent/quadlet),
//     which checks every field it writes;
//  2. validate the units with the host's own quadlet generator (quadlet -dryrun; a complaint
//     on stderr or a missing unit fails, whatever the exit code);
//  3. write registries.conf (every image name to the appliance's registry, no fallback) and
//     pull every image by name@digest; a failed pull puts registries.conf back as it was;
//  4. write the config files into their content-addressed directories;
//  5. stage the units in a directory beside the unit directory, outside quadlet's search path,
//     and mark the generation pending in the agent's state;
//  6. stop the services of the units the generation removes, while their files still exist;
//  7. swap the staged directory with the unit directory (renameat2 RENAME_EXCHANGE), and
//     remove the old copy;
//  8. one daemon-reload over D-Bus;
//  9. restart the services whose unit changed, at once, and wait for each job's result and
//     then for each container to run, and to be healthy when it has a health check; an
//     unhealthy verdict fails at once, and the bound is Config.WaitTimeout or the time the
//     check needs for a verdict (start period, then retries+1 intervals and timeouts),
//     whichever is longer;
//  10. commit: save the Desired as applied and the one before as previous, drop the pending
//     mark, remove config directories neither uses, and remove the containers that carry
//     cairn's owner label and that no unit names.
//
// A failure in steps 1-4 changes nothing on the host (no unit, no reload: config files only
// ever add content-addressed directories). A failure after that rolls back to the applied
// generation: the units it does not have are stopped, its units are swapped back, its
// registries.conf is restored, systemd reloads once, and the services the attempt touched
// restart. The status then says State failed, with a Reason naming the container and what
// failed, e.g. "web: pull of docker.io/library/nginx@sha256:… failed: …", "web: unit
// cairn-web.service: job result failed", "web: health check unhealthy within 2m0s", followed by
// "rolled back to generation N".
//
// A rollback renders the applied generation again from the agent's saved state rather than
// keeping the displaced unit directory: no old copy lingers for a reload to find, and an
// agent killed half-way can roll back from its state alone. When the agent is killed (or
// stopped) half-way, the pending mark stays, and Recover, which Run calls first, rolls back.
//
// Applies are serialized, so two daemon-reloads (two generator runs) never overlap; Run holds
// a lock file under /run so that a second agent cannot run beside it.
//
// The seams are small interfaces: Systemd (DBus is the real one, over the system bus with
// github.com/coreos/go-systemd/v22/dbus) and Podman (PodmanCLI runs the podman command with
// JSON output, since podman's Go bindings are out of reach: podman ps for the owned
// containers, then podman container inspect for their health, image digest and restart
// count), and Config.Validate (quadlet's Validate by default).
//
// # Files
//
// Every path comes from Paths (DefaultPaths on a host):
//
//	/etc/containers/systemd/cairn                    the running generation's units
//	/etc/containers/cairn-staging                    the next generation's, before the swap
//	/etc/containers/registries.conf.d/50-cairn.conf  where images come from
//	/var/lib/cairn/config                            config files mounted into containers
//	/var/lib/cairn/agent                             the agent's state (JSON, mode 0600)
//	/run/cairn-agent.lock                            one agent at a time
//
// # Pruning
//
// Removing a container or a role from the site stops and removes exactly its unit, and its
// container if one is left (quadlet's containers are removed when they stop). Containers are
// found by cairn's owner label (quadlet.OwnerLabel=cairn), checked again on each container
// before it is removed: a container cairn did not create is never touched.
//
// # Status
//
// Agent.Status reports the applied and attempted generations, the host's state (ready,
// deploying, failed) and each owned container: state, image digest, health, restarts (the
// service's restarts by systemd plus podman's own) and start time; a desired container podman
// lacks shows as missing.
//
// # The service
//
// Run is the service (cairn-agent host run): it reads the host agent's file (the configdrive's
// api.AgentFile, read in place by ReadConfigDrive, or a plain JSON file), long-polls the
// host's Desired with the host token, applies each new generation, and posts the status after
// every apply, when a container changes, and every 30 s. A 401 is logged and retried slowly,
// reading the agent's file again (a re-adoption writes a new token). While the appliance is out
// of reach it retries with exponential backoff and jitter (1 s to 60 s) and changes nothing:
// the applied generation keeps running, and comes back after a reboot since its units are
// enabled (WantedBy=multi-user.target). A generation that failed before changing the host (a
// pull) is tried again after a minute; one that was rolled back is tried again only when the
// appliance sends another generation, or once after the agent restarts.
//
// Operators' log requests (api.LogRequest, cairn host logs) come with a Desired answer and
// are no part of the desired state: the agent answers each at once, beside the long poll, by
// posting the container's podman logs to the appliance as they come (the host opens no port),
// for containers cairn owns only.
//
// Install writes, enables and starts the agent's own service unit.
//
// The package logs through Config.Log and RunConfig.Log (log/slog), and stays silent without
// one.
package host
