package content

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// The iPXE binaries examples/build.toml carries are not stand-ins: they are Debian trixie's
// ipxe package, the release the appliance runs, taken from the package itself. It is fetched
// once from the Debian mirror into a cache and checked against the archive's sha256, and the
// binaries are checked against the sha256 build.toml pins (TestIPXEBinaries keeps the pins,
// the package and build.toml in step). When trixie's ipxe changes, the mirror drops this
// version: update IPXEPackage, its digest and size, every IPXEBinaries sha256, build.toml and
// build.lock together.
const (
	IPXEVersion       = "1.21.1+git20250501.dad20602+dfsg-1"
	IPXEPackage       = "pool/main/i/ipxe/ipxe_" + IPXEVersion + "_all.deb"
	IPXEPackageSHA256 = "eeaca79dbde0fb86c102bf1d362c6f6a67ed0ddab38b3dd12e1b332339f5dd99"
	IPXEPackageSize   = 2480284
	// IPXEPath is where Serve offers each binary, by name: /files/ipxe/ipxe.efi.
	IPXEPath = "/files/ipxe/"
)

// PackageFile is one file of a Debian package: the name it goes by (for an iPXE binary, the
// name build.toml carries it under, the file name the TFTP server answers to), its path in the
// package and its sha256.
type PackageFile struct {
	Name, Path, SHA256 string
}

// IPXEBinaries are the binaries build.toml carries: BIOS (undionly.kpxe, over the NIC's
// UNDI), UEFI x86-64 with iPXE's own drivers (ipxe.efi, which the package links to
// ipxe-amd64.efi) and UEFI x86-64 over the firmware's network stack (snponly.efi).
var IPXEBinaries = []PackageFile{
	{"undionly.kpxe", "usr/lib/ipxe/undionly.kpxe", "391bfe580ec9f823d046ee390765d6c389f482b9a8b9fae0f90871cd8ff57828"},
	{"ipxe.efi", "usr/lib/ipxe/ipxe-amd64.efi", "6095eb23f4173674a3dc124a2a6d3cdeed514172793306a10d525f57b97cdc6a"},
	{"snponly.efi", "usr/lib/ipxe/snponly.efi", "9a624b4e05ebc25718a7658356628a352532bd278e7a50465a36ab94a7c4e580"},
}

// DebianMirror is where the package is fetched from; $CAIRN_DEBIAN_MIRROR overrides it.
const DebianMirror = "http://deb.debian.org/debian"

// CacheEnv names the variable that overrides the directory the packages are kept in: by default
// cairn/debian under the user cache directory (~/.cache on Linux).
const CacheEnv = "CAIRN_DEBIAN_CACHE"

// IPXE returns the binaries of IPXEBinaries by name, from trixie's ipxe package in the cache,
// fetching the package first when the cache lacks it. Every byte is checked: the package
// against IPXEPackageSHA256, each binary against its pin.
func IPXE(ctx context.Context) (map[string][]byte, error) {
	deb, err := ipxePackage(ctx)
	if err != nil {
		return nil, err
	}
	files, err := debFiles(deb, IPXEBinaries)
	if err != nil {
		return nil, fmt.Errorf("reading trixie's ipxe package %s: %w", IPXEVersion, err)
	}
	return files, nil
}

func cacheDir() (string, error) {
	if d := os.Getenv(CacheEnv); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding a cache for trixie's packages: %w; set %s", err, CacheEnv)
	}
	return filepath.Join(d, "cairn", "debian"), nil
}

// ipxePackage returns the package's bytes from the cache, or fetches and caches them.
func ipxePackage(ctx context.Context) ([]byte, error) {
	p, err := debianPackage(ctx, "ipxe", IPXEPackage, IPXEPackageSHA256, IPXEPackageSize)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

// debianPackage returns the path of a package of trixie in the cache (CacheEnv), fetching it
// from the mirror first when the cache lacks it or holds other bytes. pool is its path on the
// mirror, what names it in messages.
func debianPackage(ctx context.Context, what, pool, sha256Hex string, size int64) (string, error) {
	dir, err := cacheDir()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, filepath.Base(pool))
	if got, n, err := fileSHA256(path); err == nil && got == sha256Hex && n == size {
		return path, nil
	}
	mirror := os.Getenv("CAIRN_DEBIAN_MIRROR")
	if mirror == "" {
		mirror = DebianMirror
	}
	url := strings.TrimSuffix(mirror, "/") + "/" + pool
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("fetching trixie's %s package: %w", what, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("fetching trixie's %s package %s: %s (when Debian has replaced this version, update the pins in examples/content, examples/build.toml and examples/build.lock)", what, url, resp.Status)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil { //nolint:gosec // a cache of public packages
		return "", err
	}
	tmp, err := os.CreateTemp(dir, "."+what+"-*.deb")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(resp.Body, size+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("fetching trixie's %s package %s: %w", what, url, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha256Hex || n != size {
		return "", fmt.Errorf("trixie's %s package from %s has sha256 %s (%d bytes), want %s (%d bytes)", what, url, got, n, sha256Hex, size)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil { //nolint:gosec // a cache of public packages
		return "", err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", err
	}
	return path, nil
}

// fileSHA256 hashes a file.
func fileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// debFiles reads the named regular files out of a .deb (an ar archive whose data.tar.xz or
// data.tar.zst holds the files) and checks each against its sha256.
func debFiles(deb []byte, want []PackageFile) (map[string][]byte, error) {
	data, member, err := arMember(deb, "data.tar.")
	if err != nil {
		return nil, err
	}
	var r io.Reader
	switch member {
	case "data.tar.xz":
		if r, err = xz.NewReader(bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("%s: %w", member, err)
		}
	case "data.tar.zst":
		zr, err := zstd.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", member, err)
		}
		defer zr.Close()
		r = zr
	default:
		return nil, fmt.Errorf("%s: expected data.tar.xz or data.tar.zst", member)
	}
	byPath := map[string]PackageFile{}
	for _, w := range want {
		byPath[w.Path] = w
	}
	out := map[string][]byte{}
	tr := tar.NewReader(bufio.NewReaderSize(r, 1<<20))
	for len(out) < len(want) {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", member, err)
		}
		w, ok := byPath[strings.TrimPrefix(h.Name, "./")]
		if !ok {
			continue
		}
		if h.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("%s is not a regular file in the package", w.Path)
		}
		b, err := io.ReadAll(io.LimitReader(tr, 64<<20))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", w.Path, err)
		}
		if got := SHA256(b); got != w.SHA256 {
			return nil, fmt.Errorf("%s has sha256 %s, want %s", w.Path, got, w.SHA256)
		}
		out[w.Name] = b
	}
	for _, w := range want {
		if out[w.Name] == nil {
			return nil, fmt.Errorf("the package has no %s", w.Path)
		}
	}
	return out, nil
}

// arMember returns the first member of an ar archive whose name starts with prefix.
func arMember(ar []byte, prefix string) ([]byte, string, error) {
	const magic, header = "!<arch>\n", 60
	if !bytes.HasPrefix(ar, []byte(magic)) {
		return nil, "", errors.New("not a Debian package (no ar header)")
	}
	for off := len(magic); off+header <= len(ar); {
		h := ar[off : off+header]
		name := strings.TrimSuffix(strings.TrimSpace(string(h[0:16])), "/")
		size, err := strconv.ParseInt(strings.TrimSpace(string(h[48:58])), 10, 64)
		if err != nil || size < 0 || int64(off+header)+size > int64(len(ar)) {
			return nil, "", fmt.Errorf("ar member %q: bad size", name)
		}
		body := ar[off+header : off+header+int(size)]
		if strings.HasPrefix(name, prefix) {
			return body, name, nil
		}
		off += header + int(size) + int(size%2)
	}
	return nil, "", fmt.Errorf("no %s* member", prefix)
}
