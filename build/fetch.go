package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	getter "github.com/hashicorp/go-getter/v2"
)

// ErrChecksum is returned (wrapped) when a fetched source does not have the sha256 build.toml
// pins.
var ErrChecksum = errors.New("build: checksum mismatch")

// source is one file build.toml names: an OS image, a netboot asset, a file, or a package
// [agent] makes the agent from.
type source struct {
	Kind   string // os_image, netboot, file, agent
	Name   string
	Source string // as written in build.toml
	SHA256 string
	Size   int64 // -1 while unknown
}

// label names the source in messages: "os_image debian-12", or the key of [agent]:
// "agent.kernel".
func (s source) label() string {
	if s.Kind == kindAgent {
		return s.Kind + "." + s.Name
	}
	return s.Kind + " " + s.Name
}

// fetcher fetches sources into the cache through go-getter (http, https, file, git, …).
type fetcher struct {
	cache    *Cache
	pwd      string // directory relative sources are resolved against (build.toml's)
	attempts int    // tries per source; a failed try leaves a partial download the next resumes
	progress func(s source, done, total int64)
}

// getter returns a go-getter client that neither unpacks archives nor decompresses: the
// sha256 in build.toml is of the file as published.
func (f *fetcher) client() *getter.Client {
	return &getter.Client{
		Decompressors: map[string]getter.Decompressor{},
		Getters: []getter.Getter{
			&getter.HttpGetter{Netrc: true, HeadFirstTimeout: 30 * time.Second},
			new(getter.FileGetter),
			&getter.GitGetter{},
		},
	}
}

// fetch makes sure the cache holds src and returns the path of the cached file. A download that
// fails half-way is resumed (HTTP Range) on the next attempt, in this run or the next one.
func (f *fetcher) fetch(ctx context.Context, src source) (string, error) {
	if f.cache.Has(src.SHA256) {
		return f.cache.blobPath(src.SHA256), nil
	}
	partial := f.cache.partialPath(src.SHA256)
	attempts := max(f.attempts, 1)
	var err error
	for try := 1; try <= attempts; try++ {
		if err = ctx.Err(); err != nil {
			return "", err
		}
		err = f.get(ctx, src, partial)
		if err == nil || errors.Is(err, context.Canceled) {
			break
		}
		if try < attempts {
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(time.Duration(try) * 500 * time.Millisecond):
			}
		}
	}
	if err != nil {
		return "", fmt.Errorf("fetching %s from %s: %w", src.label(), src.Source, err)
	}
	got, size, err := hashFile(partial)
	if err != nil {
		return "", fmt.Errorf("fetching %s: %w", src.label(), err)
	}
	if got != src.SHA256 {
		_ = os.Remove(partial) // a wrong file is no start for a resume
		return "", fmt.Errorf("%w: %s from %s: expected sha256 %s, got %s (%d bytes); if the source changed on purpose, put the new sha256 in build.toml",
			ErrChecksum, src.label(), src.Source, src.SHA256, got, size)
	}
	if err := os.Chmod(partial, 0o644); err != nil { //nolint:gosec // the store may hard-link it; see Cache
		return "", fmt.Errorf("fetching %s: %w", src.label(), err)
	}
	if err := os.Rename(partial, f.cache.blobPath(src.SHA256)); err != nil {
		return "", fmt.Errorf("fetching %s: %w", src.label(), err)
	}
	return f.cache.blobPath(src.SHA256), nil
}

func (f *fetcher) get(ctx context.Context, src source, dst string) error {
	req := &getter.Request{
		Src:     src.Source,
		Dst:     dst,
		Pwd:     f.pwd,
		GetMode: getter.ModeFile,
		Copy:    true, // never a symlink to the source: the cache must hold the bytes
	}
	if f.progress != nil {
		req.ProgressListener = progressFunc(func(done, total int64) { f.progress(src, done, total) })
	}
	_, err := f.client().Get(ctx, req)
	return err
}

// progressFunc adapts a callback to go-getter's ProgressTracker.
type progressFunc func(done, total int64)

func (p progressFunc) TrackProgress(_ string, current, total int64, stream io.ReadCloser) io.ReadCloser {
	p(current, total)
	return &progressReader{ReadCloser: stream, done: current, total: total, report: p}
}

type progressReader struct {
	io.ReadCloser
	done, total int64
	report      progressFunc
}

func (r *progressReader) Read(b []byte) (int, error) {
	n, err := r.ReadCloser.Read(b)
	r.done += int64(n)
	r.report(r.done, r.total)
	return n, err
}

func hashFile(path string) (hexDigest string, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	size, err = io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("hashing %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), size, nil
}

// sizeOf finds the size of a source without fetching it: from the cache, from a local file, or
// from an HTTP HEAD. It returns -1 when it cannot tell (git, or a server that does not say).
func (f *fetcher) sizeOf(ctx context.Context, src source) int64 {
	if info, err := os.Stat(f.cache.blobPath(src.SHA256)); err == nil {
		return info.Size()
	}
	s := src.Source
	if forced, rest, ok := strings.Cut(s, "::"); ok && !strings.Contains(forced, "/") {
		if forced != "http" && forced != "https" && forced != "file" {
			return -1
		}
		s = rest
	}
	u, err := url.Parse(s)
	switch {
	case err == nil && (u.Scheme == "http" || u.Scheme == "https"):
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, u.String(), nil)
		if err != nil {
			return -1
		}
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req) // a hung server must not stall a plan
		if err != nil {
			return -1
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return -1
		}
		if n, err := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64); err == nil {
			return n
		}
		return -1
	case err == nil && u.Scheme == "file":
		s = u.Path
	case err == nil && u.Scheme != "":
		return -1
	}
	if !filepath.IsAbs(s) {
		s = filepath.Join(f.pwd, s)
	}
	if info, err := os.Stat(s); err == nil && info.Mode().IsRegular() {
		return info.Size()
	}
	return -1
}
