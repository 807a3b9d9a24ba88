// Package daemon is cairn's appliance daemon. So far it serves the store on the boot medium as a
// read-only container registry (through airgap.NewRegistry, with an optional writable store
// layered over it), tells systemd when it is ready and keeps its watchdog fed only while the
// registry answers, and prints a ready line for the serial console.
//
// It does not yet watch the site, plan, apply, keep state or run the PXE services; it reads the
// site only through package site when it does.
package daemon
