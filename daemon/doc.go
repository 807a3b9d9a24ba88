// Package daemon is cairn's appliance daemon. Run finds the store on the boot medium (or at an
// absolute path) and runs a set of services under one errgroup until its context ends:
//
//   - the registry and API server: the store as a registry that refuses every write (through
//     airgap.NewRegistry, with an upper store cairn writes read after the medium's), beside
//     the iPXE scripts and netboot assets (package daemon/boot), the agent API (package
//     daemon/agents) and the operator API, metrics and status page (package daemon/api), on
//     one port;
//   - the site watcher (package daemon/watch) and the converger, which loads the site through
//     package site whenever it changes or systemctl reload asks, applies every valid edit to
//     the state (packages daemon/reconcile and daemon/state) and keeps the last good site when
//     an edit is invalid, publishing why;
//   - the watchdog, which feeds systemd's watchdog only while the registry answers and the
//     converging loop goes round;
//   - with pxe on, DHCP and TFTP (below).
//
// The site is loaded and applied before the daemon tells systemd READY=1 and prints its ready
// line. A service that fails stops the daemon with its error; a clean stop returns nil.
//
// The API's backup (package daemon/backup) takes the state and a copy of the site between two
// loads of the converger, and again after the next load until the site copied is the one the
// state last loaded, so that the two restore as a pair.
//
// With pxe on (the default), it also runs DHCP (package daemon/dhcp, as the site's
// network.dhcp says) and TFTP of the iPXE binaries (package daemon/tftp) on the site's
// provisioning interface; both follow each applied site, and until that interface holds the
// appliance's address they say why in STATUS= and the log and try again, without stopping the
// daemon.
package daemon
