// Package tftp is the appliance's TFTP server: it sends the iPXE binaries the store carries
// (trixie's undionly.kpxe, ipxe.efi and snponly.efi, netboot artifacts of type ipxe) to hosts
// whose firmware PXE-boots, and nothing else. Everything after iPXE goes over HTTP.
//
// New binds the socket (IPv4, optionally to one interface with SO_BINDTODEVICE) and Run
// serves read requests until its context ends. A transfer runs from a socket of its own,
// bound to the address the request came to, and negotiates the options of RFC 2347: blksize
// (RFC 2348, at most 1468 bytes, or the interface's MTU less 32 when an interface is named),
// tsize and timeout (RFC 2349) and windowsize (RFC 7440, at most 64). Values out of range are
// lowered to the limit or, when they make no sense (a blksize under 8, a windowsize of 0),
// ignored, so no request can make the server allocate more than one window of one block.
//
// The server is read-only and serves names from an allow-list, never paths: Files opens a
// file by the exact name a client asks for (Store, over a sealed store, opens only the iPXE
// binaries its index lists). A write request gets an access violation; a name that is
// absolute, holds "..", a backslash or a control character gets an access violation before
// any lookup; any other name that Files does not hold gets "file not found"; netascii mode
// gets an illegal operation, since the files are binaries. Each transfer is logged at info
// with its client, file, bytes and duration.
//
// The protocol is written here rather than taken from pack.ag/tftp, whose server takes
// blksize and windowsize from the client unchecked: one read request with windowsize 0 or
// blksize 0 panics the process, and one with large values of both exhausts its memory
// (docs/decisions.md). pack.ag/tftp's client is one of the independent clients the tests use.
package tftp
