package content

import (
	"context"
	"net/http"
	"os"
	"time"
)

// The netboot agent's kernel examples/build.toml names ([agent] kernel) is Debian trixie's, the
// package itself: cairn build takes vmlinuz and the modules the agent needs out of it. Like the
// ipxe package it is fetched once from the Debian mirror into the cache and checked against the
// archive's sha256 (TestKernelPackage keeps the pins and build.toml in step). When trixie's
// kernel moves on, the mirror drops this version: take the new linux-image-*-amd64 from
// dists/trixie/main/binary-amd64/Packages, and update KernelPackage, its digest and size,
// build.toml and build.lock together.
const (
	KernelVersion       = "6.12.117+deb13-amd64"
	KernelPackage       = "pool/main/l/linux-signed-amd64/linux-image-" + KernelVersion + "_6.12.117-1_amd64.deb"
	KernelPackageSHA256 = "ca712d36790184f6ac125ce2b20ea4e2202ae6bb7817b7de268f1f0115ccda73"
	KernelPackageSize   = 108488460
	// DebianPath is where Serve offers the Debian packages by file name:
	// /files/debian/linux-image-6.12.117+deb13-amd64_6.12.117-1_amd64.deb.
	DebianPath = "/files/debian/"
)

// Kernel returns the path of trixie's kernel package in the cache, fetching it first when the
// cache lacks it (108 MB). The package is checked against KernelPackageSHA256.
func Kernel(ctx context.Context) (string, error) {
	return debianPackage(ctx, "linux-image", KernelPackage, KernelPackageSHA256, KernelPackageSize)
}

// serveFile serves a file of the cache, read from disk as it is asked for.
func serveFile(w http.ResponseWriter, r *http.Request, path string) {
	f, err := os.Open(path)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	http.ServeContent(w, r, path, time.Unix(0, 0), f)
}
