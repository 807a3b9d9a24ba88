// Package quadlet turns a host's desired containers (agent/api.Desired) into the files the host
// needs to run them under systemd through Podman Quadlet, and checks those files with the real
// quadlet generator. The host agent writes what Render returns; `cairn site units` prints it.
//
// Render makes, for each container, one .container unit named UnitName (cairn-NAME.container,
// which quadlet turns into the service ServiceName, cairn-NAME.service; the prefix keeps a
// container from shadowing a host service of the same name), the config files the container
// mounts, and one registries.conf drop-in for the host. A unit holds:
//
//   - the image by name and digest (NAME@sha256:...) with Pull=never: the agent pulls every
//     digest before it starts anything, so a start never touches the network;
//   - the labels io.cairn.owner=cairn (OwnerLabel), io.cairn.role and io.cairn.container;
//   - entrypoint (a JSON array), command (Exec=, quoted as systemd and quadlet split it),
//     environment (sorted), published ports, volumes, network (host or none; bridge is
//     podman's default) and user;
//   - a health check with Notify=healthy, so that the start job finishes only once the
//     container is healthy; TimeoutStartSec= allows for the check's start period and retries,
//     five minutes at least;
//   - Restart= as the site says, RestartSec=5 and WantedBy=multi-user.target.
//
// Every value quadlet copies into ExecStart= has % and $ doubled, so that systemd passes them
// on as they are. What a unit cannot carry safely (a control character such as a newline in
// any value, an empty or lone ';' command argument, a relative file target, a file whose
// sha256 does not match its content ...) is refused with a FieldError naming the container
// and the field.
//
// A container's files go under Layout.ConfigDir in a directory named by the container and
// ConfigHash, the hash of its files' targets and contents
// (/var/lib/cairn/config/web-0123456789abcdef/etc/nginx/nginx.conf), each mounted read-only at
// its target (and relabelled private for SELinux, which Debian hosts do not run: podman then
// skips it); the hash is also the container's CAIRN_CONFIG_HASH variable. So a change of a
// file's content changes the unit and restarts the container, while an unchanged container
// keeps a byte-identical unit.
//
// Render's output depends on the containers alone: not on the Desired's generation nor on the
// order of containers, files or environment. So the agent restarts exactly the containers whose
// units changed.
//
// Validate stages units in a temporary directory and runs quadlet -dryrun on them (podman 5.4's
// /usr/libexec/podman/quadlet on a host; scripts/deps.sh installs the same binary at
// /usr/local/libexec/cairn/quadlet on a build machine, and Find looks in both places). A
// non-zero exit, a complaint on stderr or a unit missing from quadlet's output is an error: a
// UnitError naming the unit and quoting quadlet where quadlet names one. Generate does the same
// and returns the service units quadlet makes.
//
// The registries.conf drop-in maps each registry domain the images name to the appliance's
// registry (Desired.Registry/DOMAIN, insecure: plain HTTP inside the site's network), with no
// search registries, short names enforced and no mirrors. A registry with a port cannot be
// mapped (a repository name has no ':'), so an image from one is refused.
//
// The package writes nothing to the host itself: placing the files, daemon-reload and
// restarts are the host agent's.
package quadlet
