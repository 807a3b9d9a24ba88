package initramfs

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// walkDeb calls fn for every entry of a Debian package's data archive (data.tar.xz,
// data.tar.zst, data.tar.gz or data.tar), in archive order, with the entry's name cleaned
// ("./usr/lib/x" → "usr/lib/x"). Entries whose names leave the archive's root are skipped.
// fn reads the entry's content from r; it must not keep r. It stops at the first error, or
// when ctx ends.
func walkDeb(ctx context.Context, deb string, fn func(name string, h *tar.Header, r io.Reader) error) error {
	f, err := os.Open(deb)
	if err != nil {
		return err
	}
	defer f.Close()
	member, off, size, err := arFind(f, "data.tar")
	if err != nil {
		return fmt.Errorf("%s: %w", deb, err)
	}
	var r io.Reader = bufio.NewReaderSize(io.NewSectionReader(f, off, size), 1<<20)
	switch member {
	case "data.tar.xz":
		if r, err = xz.NewReader(r); err != nil {
			return fmt.Errorf("%s: %s: %w", deb, member, err)
		}
	case "data.tar.zst":
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return fmt.Errorf("%s: %s: %w", deb, member, err)
		}
		defer zr.Close()
		r = zr
	case "data.tar.gz":
		gr, err := gzip.NewReader(r)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", deb, member, err)
		}
		defer gr.Close()
		r = gr
	case "data.tar":
	default:
		return fmt.Errorf("%s: data member %s: expected data.tar.xz, data.tar.zst, data.tar.gz or data.tar", deb, member)
	}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %s: %w", deb, member, err)
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." || name == ".." || strings.HasPrefix(name, "../") || path.IsAbs(name) {
			continue
		}
		if err := fn(name, h, tr); err != nil {
			return err
		}
	}
}

// arFind finds the first member of an ar archive (a .deb) whose name starts with prefix, and
// returns its name, offset and size.
func arFind(f io.ReaderAt, prefix string) (name string, off, size int64, err error) {
	const magic, header = "!<arch>\n", 60
	head := make([]byte, len(magic))
	if _, err := f.ReadAt(head, 0); err != nil || string(head) != magic {
		return "", 0, 0, errors.New("not a Debian package (no ar header)")
	}
	h := make([]byte, header)
	for off = int64(len(magic)); ; {
		if _, err := f.ReadAt(h, off); err != nil {
			if errors.Is(err, io.EOF) {
				return "", 0, 0, fmt.Errorf("not a Debian package: no %s* member", prefix)
			}
			return "", 0, 0, err
		}
		name = strings.TrimSuffix(strings.TrimSpace(string(h[0:16])), "/")
		size, err = strconv.ParseInt(strings.TrimSpace(string(h[48:58])), 10, 64)
		if err != nil || size < 0 || string(h[58:60]) != "`\n" {
			return "", 0, 0, fmt.Errorf("not a Debian package: ar member %q has a bad header", name)
		}
		off += header
		if strings.HasPrefix(name, prefix) {
			return name, off, size, nil
		}
		off += size + size%2
	}
}
