package hostimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"
)

// compress writes disk compressed with the zstd command to dst and returns both sides' sizes
// and sha256 sums, each measured on the bytes as they pass.
func compress(ctx context.Context, disk, dst string) (Info, error) {
	in, err := os.Open(disk)
	if err != nil {
		return Info{}, err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return Info{}, err
	}
	defer out.Close()

	raw, zst := sha256.New(), sha256.New()
	rawN, zstN := &counter{}, &counter{}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "zstd", zstdArgs...)
	cmd.Stdin = io.TeeReader(in, io.MultiWriter(raw, rawN))
	cmd.Stdout = io.MultiWriter(out, zst, zstN)
	cmd.Stderr = &stderr
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return Info{}, fmt.Errorf("zstd %v: %w: %s", zstdArgs, err, bytes.TrimSpace(stderr.Bytes()))
	}
	if err := out.Close(); err != nil {
		return Info{}, err
	}
	return Info{
		File:               ImageFile,
		Format:             Format,
		SHA256:             hex.EncodeToString(zst.Sum(nil)),
		Size:               zstN.n,
		UncompressedSHA256: hex.EncodeToString(raw.Sum(nil)),
		UncompressedSize:   rawN.n,
	}, nil
}

type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}
