package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/agent/image"
)

const imageUsage = `usage: cairn-agent image write URL DEVICE --sha256 HEX [--format F] [--size N]

Writes the OS image at URL onto DEVICE (a disk such as /dev/sda, or a file), resuming the
download when the connection drops, and exits 0 only when the sha256 of what was written is
HEX. Until then the first MiB of DEVICE (partition table, boot code) stays zero.

flags:`

// imageCommand runs `cairn-agent image ...` and returns the exit code: 0 when the image is
// written and checked, 1 when it is not, 2 for bad usage.
func imageCommand(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("cairn-agent image write", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sum := fs.String("sha256", "", "sha256 of the uncompressed image, what lands on the disk (required; hex, or sha256:hex)")
	blobSum := fs.String("blob-sha256", "", "sha256 of the blob as served, checked too when given")
	format := fs.String("format", "", "the blob's encoding: raw, raw+zstd, raw+gz or raw+xz (default: detected from its first bytes)")
	size := fs.Int64("size", 0, "size in bytes of the uncompressed image: a smaller DEVICE is refused before writing, and progress shows an ETA")
	fs.Usage = func() {
		fmt.Fprintln(stderr, imageUsage)
		fs.PrintDefaults()
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "cairn-agent image write: "+format+"\n", a...)
		fs.Usage()
		return 2
	}
	if len(args) == 0 || args[0] != "write" {
		return bad("want the subcommand write")
	}
	// Flags may come before, between or after the two arguments.
	var pos []string
	rest := args[1:]
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2 // flag has said why, and the usage
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(pos) != 2 {
		return bad("want URL and DEVICE, got %d arguments", len(pos))
	}
	want, err := parseDigest(*sum)
	if err != nil {
		return bad("--sha256: %v", err)
	}
	src := image.Source{URL: pos[0], Format: api.ImageFormat(*format), UncompressedDigest: want, UncompressedSize: *size}
	if *blobSum != "" {
		if src.Digest, err = parseDigest(*blobSum); err != nil {
			return bad("--blob-sha256: %v", err)
		}
	}
	switch src.Format {
	case "", api.FormatRaw, api.FormatRawZstd, api.FormatRawGzip, api.FormatRawXz:
	default:
		return bad("--format %q: want raw, raw+zstd, raw+gz or raw+xz", *format)
	}
	if *size < 0 {
		return bad("--size %d: want a size in bytes", *size)
	}

	say := func(format string, a ...any) { fmt.Fprintf(stderr, "cairn-agent: "+format+"\n", a...) }
	opts := image.Options{
		HoldHead: 1 << 20,
		Log:      say,
		Progress: func(p image.Progress) { say("%s", progressLine(p)) },
	}
	res, err := image.Write(ctx, src, pos[1], opts)
	if err != nil {
		say("image write: %v", err)
		return 1
	}
	say("wrote %s to %s: %s, %d bytes, %d zero bytes skipped, %d resumes, %.1f MB/s in %s",
		pos[0], pos[1], res.Digest, res.Written, res.Zero, res.Resumes, float64(res.Written)/1e6/res.Elapsed.Seconds(), res.Elapsed.Round(time.Millisecond))
	return 0
}

// parseDigest takes a sha256 as 64 hex digits, bare or after sha256:.
func parseDigest(s string) (string, error) {
	h := strings.ToLower(strings.TrimPrefix(s, "sha256:"))
	if len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
		if s == "" {
			return "", errors.New("required: the sha256 of the uncompressed image (64 hex digits)")
		}
		return "", fmt.Errorf("%q is not 64 hex digits", s)
	}
	return "sha256:" + h, nil
}

// progressLine is "1.2 of 2.1 GB (57 %), 312.4 MB/s, ETA 3s".
func progressLine(p image.Progress) string {
	s := fmt.Sprintf("%.1f MB", float64(p.Written)/1e6)
	if p.Total > 0 {
		s = fmt.Sprintf("%.1f of %.1f MB (%d %%)", float64(p.Written)/1e6, float64(p.Total)/1e6, p.Written*100/p.Total)
	}
	s += fmt.Sprintf(", %.1f MB/s", p.BytesPerSec/1e6)
	if p.ETA > 0 {
		s += ", ETA " + p.ETA.String()
	}
	if p.Resumes > 0 {
		s += fmt.Sprintf(", %d resumes", p.Resumes)
	}
	return s
}
