// Package vmtest runs QEMU for cairn's end-to-end tests and holds the scenarios: the appliance
// ISO boots under SeaBIOS and OVMF, from a CD-ROM drive or as a USB disk, and serves its store;
// inside it, cairn.service starts, reloads and is restarted by its watchdog as systemd should;
// machines PXE-boot from the cairn daemon (DHCP, TFTP, iPXE scripts, the netboot agent) and
// are discovered, sent to be provisioned, or sent to their local disk.
//
// A test reads like a script:
//
//	vm := vmtest.New(t, vmtest.Options{ISO: iso, Firmware: vmtest.UEFI, Media: vmtest.USB, Forward: []int{5000}})
//	vm.Start()
//	vm.WaitSerial("cairn: READY", 180*time.Second)
//	addr := vm.Addr(5000) // 127.0.0.1:port, forwarded to the guest
//
// To look inside the guest, boot the ISO's own kernel directly with systemd's debug shell on a
// second serial port, and run commands there:
//
//	kb, err := vmtest.KernelFromISO(iso, t.TempDir())
//	vm := vmtest.New(t, vmtest.Options{ISO: iso, Kernel: &kb, Shell: true})
//	vm.Start()
//	sh := vm.Shell(60 * time.Second)
//	out := sh.MustRun("systemctl is-active cairn")
//
// The VMs use TCG unless a quick probe shows that KVM really runs a guest (nested KVM can hang).
// Networking is QEMU's user mode with restrict=on: the guest reaches nothing but the host ports
// forwarded to it on 127.0.0.1. PXE scenarios (as root) instead put each VM on a tap of a
// bridge inside a network namespace of their own, where the daemon runs too: nothing they
// send leaves it. Every VM gets its own directory with its serial console log,
// QEMU's output and the shell's transcript; it is kept when the test fails.
//
// The tests are opt-in: they run with -run-vm-tests or CAIRN_VMTEST=1 (make vmtest) and skip
// otherwise, so go test ./... and go test -short never need QEMU.
package vmtest
