// Package content serves on loopback everything examples/build.toml names: the container
// images the example site's roles run, pushed to a registry, and beside it over HTTP a
// stand-in OS image, the iPXE binaries of Debian trixie's ipxe package and trixie's kernel
// package, from which cairn build makes the netboot agent's kernel and initramfs.
//
// The images are made here, deterministically, from trixie's busybox-static package, so the
// digests build.lock pins stay valid: busybox httpd serving a page, and a host metrics page
// (see Images). They run; their tests cannot start them under podman here, but run their
// entrypoint in a chroot of their layers. The OS image is a stand-in, a blank disk with a
// partition table. The iPXE binaries and the kernel are real, since hosts boot them. Every
// Debian package comes out of a cache, fetched once from the Debian mirror and checked against
// the archive's sha256 (see Busybox, IPXE and Kernel).
package content

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
)

// Addr is where Serve listens: examples/build.toml names it.
const Addr = "127.0.0.1:5055"

// OSImagePath is where Serve offers the OS image, and OSImageSHA256 its digest (build.toml
// pins it; TestOSImageDigest keeps the two in step).
const (
	OSImagePath   = "/files/debian-12.raw.zst"
	OSImageSHA256 = "59a396673dfae5f37b54ac231bfc0333fb9998d19108f245111b4ee21b197248"
)

var epoch = time.Unix(1735689600, 0).UTC() // 2025-01-01: every date in the images and files made here

// Serve starts the content server on Addr: a registry (in-process, writable, its blobs in a
// temporary directory) with Images pushed to it, the OS image under /files/, the
// iPXE binaries under /files/ipxe/ and the kernel package under /files/debian/. It serves until
// ctx ends.
func Serve(ctx context.Context, tmp string) error {
	// An upstream registry that takes pushes (cairn's own takes none): go-containerregistry's,
	// its blobs in tmp.
	blobs := filepath.Join(tmp, "blobs")
	if err := os.MkdirAll(blobs, 0o700); err != nil {
		return err
	}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithBlobHandler(registry.NewDiskBlobHandler(blobs)))
	osImage, err := OSImage()
	if err != nil {
		return err
	}
	ipxe, err := IPXE(ctx)
	if err != nil {
		return err
	}
	kernel, err := Kernel(ctx)
	if err != nil {
		return err
	}
	busybox, err := Busybox(ctx)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/v2/", reg)
	mux.HandleFunc("GET "+OSImagePath, func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, OSImagePath, epoch, bytes.NewReader(osImage))
	})
	mux.HandleFunc("GET "+IPXEPath+"{name}", func(w http.ResponseWriter, r *http.Request) {
		b, ok := ipxe[r.PathValue("name")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, r.PathValue("name"), epoch, bytes.NewReader(b))
	})
	mux.HandleFunc("GET "+DebianPath+"{name}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") != filepath.Base(kernel) {
			http.NotFound(w, r)
			return
		}
		serveFile(w, r, kernel)
	})
	ln, err := net.Listen("tcp", Addr)
	if err != nil {
		return fmt.Errorf("the example content is served on %s, which is taken: %w", Addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	for _, c := range Images {
		img, err := c.Image(busybox)
		if err != nil {
			return fmt.Errorf("making %s: %w", c.Repo, err)
		}
		r, err := name.ParseReference(Addr + "/" + c.Repo)
		if err != nil {
			return err
		}
		if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
			return fmt.Errorf("pushing %s: %w", c.Repo, err)
		}
	}
	return nil
}

// tarballLayer gzips a tar into a layer, once: every read of the layer gives these bytes. The
// gzip header holds no name and no time, so the same tar gives the same layer.
func tarballLayer(b []byte) (v1.Layer, error) {
	var z bytes.Buffer
	zw, err := gzip.NewWriterLevel(&z, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(z.Bytes())), nil },
		tarball.WithMediaType(types.OCILayer))
	// Only the v1.Layer: a tarball layer's own descriptor carries an empty map of annotations,
	// which the manifest's JSON leaves out, so that the image's Manifest() and its raw manifest
	// would differ (validate.Image says so).
	return struct{ v1.Layer }{l}, err
}

// OSImage returns the stand-in OS image: a 64 MiB blank disk with an empty GPT, compressed with
// zstd (deterministically: one encoder setting, one thread).
func OSImage() ([]byte, error) {
	disk := make([]byte, 64<<20)
	copy(disk[0x1fe:], []byte{0x55, 0xaa}) // a protective MBR's signature
	copy(disk[512:], "EFI PART")           // and where a GPT header starts
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	return enc.EncodeAll(disk, nil), nil
}

// SHA256 is a convenience for tests and the demo: the hex sha256 of b.
func SHA256(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
