// Package appliance will hold the appliance OS: its Debian trixie recipe (mmdebstrap), the
// systemd units and overlay files, medium discovery and first boot. It does not converge hosts;
// that is the daemon's job.
package appliance
