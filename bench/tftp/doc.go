// Package tftp benchmarks cairn's TFTP server (package daemon/tftp) sending a file the size
// of trixie's ipxe.efi to 50 clients at once, beside its anchor in the same run: dnsmasq's
// TFTP server (Debian's dnsmasq-base) serving the same bytes. It holds only benchmarks; run
// them with make bench. dnsmasq listens on port 69 of 127.0.0.2, which needs root.
package tftp
