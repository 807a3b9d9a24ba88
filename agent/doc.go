// Package agent holds the code that runs on hosts: the netboot agent (package agent/netboot,
// with the inventory in agent/inventory and its initramfs in agent/initramfs), provisioning
// (agent/disk, agent/image, agent/configdrive), and, to come, container convergence through
// Podman Quadlet. It trusts nothing it has not verified and never imports registry or
// build code. The agent API's wire types are in package agent/api.
//
// # The netboot agent's kernel command line
//
// The daemon's iPXE script (package daemon/boot) boots the kernel and the initramfs whose
// /init is cairn-agent with these arguments, each a single word with no spaces:
//
//	initrd=initrd                     for the EFI stub: the initramfs iPXE loaded
//	cairn.server=http://IP:PORT       the daemon's base URL: the agent API and the registry
//	cairn.mode=provision|discover     what to do (below)
//	cairn.token=TOKEN                 provision mode only: the one-time provisioning token,
//	                                  43 characters of URL-safe base64; send it as
//	                                  "Authorization: Bearer TOKEN" on every call
//	cairn.mac=52:54:00:12:34:56       the MAC the machine booted from, canonical form: the
//	                                  machine's name in every agent API path
//	console=ttyS0,115200n8 console=tty0
//
// In provision mode the agent reports its inventory, fetches its plan, writes the image and
// the partitions and the configdrive, reporting progress, then reports done (or failed, with a
// reason) and reboots: from then on the daemon's script boots the machine from its disk. The
// token dies with done or failed; a new boot is a new attempt with a new token.
//
// In discover mode the agent reports its inventory (no token), and reports it again every 30 s:
// the machine shows as discovered until a host file names its MAC. Then the report gets
// 401, and the agent reboots so that the machine boots to be provisioned.
//
// The provisioning parts are packages of their own, which the operator's tool
// (cairn-agent image write) and the benchmarks call too: agent/disk (which disk, wiping, the
// partition table after the image), agent/image (streaming, decompressing, checking and
// writing an image) and agent/configdrive (the NoCloud file system).
package agent
