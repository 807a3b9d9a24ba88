package image

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/cairn-appliance/cairn/agent/api"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// The first bytes of each encoding.
var (
	magicZstd  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicGzip  = []byte{0x1f, 0x8b}
	magicXz    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicQcow2 = []byte{'Q', 'F', 'I', 0xfb}
)

// detect names the encoding the first bytes of a blob show: raw when they show none.
func detect(head []byte) api.ImageFormat {
	switch {
	case bytes.HasPrefix(head, magicZstd):
		return api.FormatRawZstd
	case bytes.HasPrefix(head, magicGzip):
		return api.FormatRawGzip
	case bytes.HasPrefix(head, magicXz):
		return api.FormatRawXz
	case bytes.HasPrefix(head, magicQcow2):
		return api.FormatQcow2
	}
	return api.FormatRaw
}

// decoder returns what reads the image out of a blob of format f, and what releases it.
func decoder(f api.ImageFormat, r *bufio.Reader, maxWindow int64) (io.Reader, func(), error) {
	switch f {
	case api.FormatRaw:
		return r, func() {}, nil
	case api.FormatRawZstd:
		// Four blocks in flight, whatever the number of CPUs: decoding the next blocks runs
		// beside executing this one, and memory stays near one window plus four blocks of
		// 128 KiB. Block buffers are kept, not allocated per block (low memory mode): on a
		// 2 GiB image that measured both faster and smaller. zstd's own checksum is not
		// checked: the sha256 of the output is, and it would cost a tenth of the decoding.
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(4), zstd.WithDecoderLowmem(false), zstd.IgnoreChecksum(true),
			zstd.WithDecoderMaxWindow(uint64(maxWindow))) //nolint:gosec // positive
		if err != nil {
			return nil, nil, err
		}
		return d, d.Close, nil
	case api.FormatRawGzip:
		d, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return d, func() { _ = d.Close() }, nil
	case api.FormatRawXz:
		d, err := xz.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return d, func() {}, nil
	}
	return nil, nil, fmt.Errorf("no decoder for format %q", f)
}

// decodeError says what went wrong decompressing, with a hint where there is one.
func decodeError(name string, f api.ImageFormat, maxWindow int64, err error) error {
	if errors.Is(err, zstd.ErrWindowSizeExceeded) {
		return fmt.Errorf("decompressing image %s (%s): its zstd window is larger than the %s the agent allows: "+
			"compress it again without --long or --ultra (cairn build does): %w", name, f, SizeIEC(maxWindow), err)
	}
	return fmt.Errorf("decompressing image %s (%s): %w: the blob is corrupt or not in that format", name, f, err)
}
