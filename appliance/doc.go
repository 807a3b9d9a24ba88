// Package appliance is the appliance OS: the Debian trixie recipe that mmdebstrap turns into a
// live-bootable base (kernel, initramfs and root squashfs), the systemd units and overlay files
// it carries, the cache that keeps a built base by the hash of its recipe, and medium discovery,
// which finds the cairn store on the boot medium at runtime.
//
// It does not master ISOs (build/iso does) and does not converge hosts (package daemon does).
package appliance
