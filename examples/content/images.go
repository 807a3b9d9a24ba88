package content

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The example site's containers run images made here from Debian trixie's busybox-static
// package: its one static binary, the links of the applets the images use, and each image's own
// files. Like the ipxe and kernel packages, the package is fetched once from the Debian mirror
// into the cache and checked against the archive's sha256, and the binary against its own pin.
// When trixie's busybox-static changes (a binNMU against a new glibc is enough), the mirror
// drops this version: take the new Filename, SHA256 and Size from
// dists/trixie/main/binary-amd64/Packages, the binary's sha256 from the package, and update
// the pins, examples/build.lock (cairn build writes it) and the version in the image names if
// busybox's own moved, together.
const (
	BusyboxVersion       = "1.37.0" // busybox's own, which the images' tags carry
	BusyboxDebianVersion = "1:1.37.0-6+b9"
	BusyboxPackage       = "pool/main/b/busybox/busybox-static_1.37.0-6+b9_amd64.deb"
	BusyboxPackageSHA256 = "598a3fd92bdafc34cd81196b2952ad36e910e47a4ecf162f8ce5e8e262598e53"
	BusyboxPackageSize   = 955316
)

// BusyboxBinary is the binary in the package (merged /usr: usr/bin) and its sha256.
var BusyboxBinary = PackageFile{"busybox", "usr/bin/busybox", "7ae95c260622412ceba6eb9f45d68f616cdc091a1d71d6c0a08b5875bb2c31dd"}

// Applets are the names linked to /bin/busybox in every image: what the images run (httpd, sh
// for the CGI script, wget for health checks, and what the script calls) and what an operator
// reaches for inside a container (podman exec NAME sh).
var Applets = []string{
	"[", "ash", "awk", "cat", "cp", "cut", "date", "df", "du", "echo", "env", "false", "find",
	"free", "grep", "head", "hostname", "httpd", "id", "kill", "less", "ln", "ls", "mkdir", "mv",
	"nc", "netstat", "nslookup", "ping", "printf", "ps", "pwd", "rm", "sed", "sh", "sleep", "sort",
	"tail", "test", "top", "touch", "tr", "true", "uname", "uptime", "vi", "wc", "wget", "xargs",
}

// ContainerImage is one of the example's container images.
type ContainerImage struct {
	// Repo is where Serve pushes it (examples/httpd:1.37.0): build.toml pulls Addr/Repo.
	Repo string
	// Name is what build.toml renames it to, the name the site runs it by.
	Name        string
	Description string
	Entrypoint  []string
	Cmd         []string // the default arguments: the port and the directory served
	User        string   // "" is root
	Port        string   // exposed, as 80/tcp
	// Health is a health check that works inside the image as it starts, for the site's
	// [container.health] command.
	Health []string
	// Files are the image's own, in a layer of their own above busybox's.
	Files []ImageFile
}

// ImageFile is a file of an image: a directory when Path ends in "/".
type ImageFile struct {
	Path string // without a leading "/"
	Mode int64
	Data string
}

// Images are the example's container images.
var Images = []ContainerImage{
	{
		Repo:        "examples/httpd:" + BusyboxVersion,
		Name:        "examples.cairn.internal/httpd:" + BusyboxVersion,
		Description: "busybox httpd serving /www on port 80: mount a page over /www/index.html, or a directory under /www.",
		// -f stays in the foreground (the container's process); -v logs each request to stderr,
		// which podman logs shows.
		Entrypoint: []string{"/bin/busybox", "httpd", "-f", "-v"},
		Cmd:        []string{"-p", "80", "-h", "/www"},
		Port:       "80/tcp",
		Health:     []string{"/bin/busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/healthz"},
		Files: []ImageFile{
			{"www/", 0o755, ""},
			{"www/healthz", 0o644, "ok\n"},
			{"www/index.html", 0o644, `<!doctype html>
<title>busybox httpd</title>
<h1>busybox httpd ` + BusyboxVersion + `</h1>
<p>The default page of cairn's example httpd image (busybox-static ` + BusyboxDebianVersion + ` from Debian trixie).
Mount your own page over /www/index.html, or your files under /www.</p>
`},
		},
	},
	{
		Repo: "examples/metrics:" + BusyboxVersion,
		Name: "examples.cairn.internal/metrics:" + BusyboxVersion,
		Description: "The host's load, memory, boot time and root file system in Prometheus' text format, " +
			"at /cgi-bin/metrics on port 9100 (busybox httpd and a shell script); mount the host's / at $HOST_ROOT.",
		Entrypoint: []string{"/bin/busybox", "httpd", "-f", "-v"},
		Cmd:        []string{"-p", "9100", "-h", "/www"},
		User:       "65534:65534", // nobody: 9100 needs no privilege
		Port:       "9100/tcp",
		Health:     []string{"/bin/busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9100/cgi-bin/metrics"},
		Files: []ImageFile{
			{"www/", 0o755, ""},
			{"www/cgi-bin/", 0o755, ""},
			{"www/cgi-bin/metrics", 0o755, metricsScript},
			{"www/healthz", 0o644, "ok\n"},
			{"www/index.html", 0o644, `<!doctype html>
<title>metrics</title>
<p>This host's metrics, in Prometheus' text format: <a href="/cgi-bin/metrics">/cgi-bin/metrics</a>.</p>
`},
		},
	},
}

// metricsScript is the metrics image's CGI script. node_* are node-exporter's names, so
// dashboards made for it read these few.
const metricsScript = `#!/bin/sh
# The host's load, memory, boot time and root file system in Prometheus' text format: a CGI
# script of busybox httpd. /proc shows the host's load and memory from inside a container; the
# root file system is df's of $HOST_ROOT, where the host's / is mounted (/ by default).
root=${HOST_ROOT:-/}
echo "Content-Type: text/plain; version=0.0.4; charset=utf-8"
echo
gauge() { # NAME HELP VALUE [LABELS]
	echo "# HELP $1 $2"
	echo "# TYPE $1 gauge"
	echo "$1$4 $3"
}
read -r l1 l5 l15 _ < /proc/loadavg
gauge node_load1 "1m load average." "$l1"
gauge node_load5 "5m load average." "$l5"
gauge node_load15 "15m load average." "$l15"
gauge node_memory_MemTotal_bytes "Memory information field MemTotal_bytes." "$(awk '$1 == "MemTotal:" { printf "%.0f", $2 * 1024 }' /proc/meminfo)"
gauge node_memory_MemAvailable_bytes "Memory information field MemAvailable_bytes." "$(awk '$1 == "MemAvailable:" { printf "%.0f", $2 * 1024 }' /proc/meminfo)"
gauge node_boot_time_seconds "Node boot time, in unixtime." "$(awk '$1 == "btime" { print $2 }' /proc/stat)"
gauge node_time_seconds "System time in seconds since epoch (1970)." "$(date +%s)"
fs=$(df -Pk "$root" | awk 'NR == 2 { printf "%.0f %.0f", $2 * 1024, $4 * 1024 }')
if [ -n "$fs" ]; then
	set -- $fs
	gauge node_filesystem_size_bytes "Filesystem size in bytes." "$1" '{mountpoint="/"}'
	gauge node_filesystem_avail_bytes "Filesystem space available to non-root users in bytes." "$2" '{mountpoint="/"}'
fi
`

// Busybox returns the busybox binary of trixie's busybox-static package, from the cache,
// fetching the package first when the cache lacks it. The package is checked against
// BusyboxPackageSHA256, the binary against BusyboxBinary's pin.
func Busybox(ctx context.Context) ([]byte, error) {
	p, err := debianPackage(ctx, "busybox-static", BusyboxPackage, BusyboxPackageSHA256, BusyboxPackageSize)
	if err != nil {
		return nil, err
	}
	deb, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	files, err := debFiles(deb, []PackageFile{BusyboxBinary})
	if err != nil {
		return nil, fmt.Errorf("reading trixie's busybox-static package %s: %w", BusyboxDebianVersion, err)
	}
	return files[BusyboxBinary.Name], nil
}

// Image builds the image for linux/amd64 from busybox (Busybox's bytes) in two gzipped layers:
// the binary with its applet links, /etc/passwd and /etc/group (root and nobody) and a /tmp,
// which every image shares, and the image's Files. Every date is the epoch, so the same
// busybox gives the same digest.
//
// The config's StopSignal is SIGKILL: busybox httpd sets no handler for SIGTERM, and the
// kernel does not deliver a signal without one to a PID namespace's init, which the
// container's process is; a stop would wait out podman's timeout and kill it anyway. The server
// keeps no state to save.
func (c ContainerImage) Image(busybox []byte) (v1.Image, error) {
	base, err := tarLayer(baseFiles(busybox))
	if err != nil {
		return nil, err
	}
	own, err := tarLayer(c.Files)
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1),
		mutate.Addendum{Layer: base, History: v1.History{Created: v1.Time{Time: epoch},
			CreatedBy: "busybox-static " + BusyboxDebianVersion + " of Debian trixie: /bin/busybox and links of its applets; /etc/passwd, /etc/group, /tmp"}},
		mutate.Addendum{Layer: own, History: v1.History{Created: v1.Time{Time: epoch},
			CreatedBy: "cairn example content: " + strings.Join(filePaths(c.Files), " ")}})
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", "amd64", v1.Time{Time: epoch}
	cf.Config = v1.Config{
		Entrypoint:   c.Entrypoint,
		Cmd:          c.Cmd,
		Env:          []string{"PATH=/bin"},
		User:         c.User,
		WorkingDir:   "/www",
		ExposedPorts: map[string]struct{}{c.Port: {}},
		StopSignal:   "SIGKILL",
		Labels: map[string]string{
			"org.opencontainers.image.title":       path.Base(strings.SplitN(c.Name, ":", 2)[0]),
			"org.opencontainers.image.description": c.Description,
			"org.opencontainers.image.version":     BusyboxVersion,
			"org.opencontainers.image.licenses":    "GPL-2.0-only", // busybox's; its source is Debian's busybox source package
		},
	}
	return mutate.ConfigFile(img, cf)
}

// baseFiles is the layer every image shares.
func baseFiles(busybox []byte) []ImageFile {
	files := []ImageFile{
		{"bin/", 0o755, ""},
		{"bin/busybox", 0o755, string(busybox)},
	}
	for _, a := range Applets {
		files = append(files, ImageFile{Path: "bin/" + a, Data: "busybox"}) // Mode 0: a symlink to Data
	}
	return append(files,
		ImageFile{"etc/", 0o755, ""},
		ImageFile{"etc/group", 0o644, "root:x:0:\nnogroup:x:65534:\n"},
		ImageFile{"etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"},
		ImageFile{"root/", 0o700, ""},
		ImageFile{"tmp/", 0o1777, ""},
	)
}

// tarLayer writes files, in their order, into a tar owned by root and dated at the epoch, and
// makes a layer of it. A file of Mode 0 is a symlink to Data.
func tarLayer(files []ImageFile) (v1.Layer, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range files {
		h := &tar.Header{Name: f.Path, Mode: f.Mode, ModTime: epoch, Format: tar.FormatPAX}
		switch {
		case strings.HasSuffix(f.Path, "/"):
			h.Typeflag = tar.TypeDir
		case f.Mode == 0:
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, f.Data, 0o777
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(f.Data)); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return tarballLayer(b.Bytes())
}

func filePaths(files []ImageFile) []string {
	var out []string
	for _, f := range files {
		if !strings.HasSuffix(f.Path, "/") {
			out = append(out, "/"+f.Path)
		}
	}
	return out
}
