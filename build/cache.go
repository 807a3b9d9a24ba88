package build

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
)

// Cache is the content-addressed cache a build fetches into: registry blobs and source files,
// each under its sha256, so that a rebuild fetches nothing it already has. Files enter the
// cache only complete and verified (written beside, hashed, then renamed); partial downloads of
// sources stay under partial/ so that the next run resumes them.
type Cache struct {
	Dir string
}

// DefaultCacheDir is the cache a build uses without --cache: $XDG_CACHE_HOME/cairn or
// ~/.cache/cairn.
func DefaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the user cache directory (give --cache): %w", err)
	}
	return filepath.Join(d, "cairn"), nil
}

func (c *Cache) blobPath(hexDigest string) string {
	return filepath.Join(c.Dir, "blobs", "sha256", hexDigest)
}

func (c *Cache) partialPath(hexDigest string) string {
	return filepath.Join(c.Dir, "partial", hexDigest)
}

// linkFrom offers cached blobs to the store to hard-link (airgap.StoreConfig.LinkFrom).
func (c *Cache) linkFrom(d digest.Digest) (string, bool) {
	if d.Algorithm() != digest.SHA256 || d.Validate() != nil {
		return "", false
	}
	p := c.blobPath(d.Encoded())
	_, err := os.Stat(p)
	return p, err == nil
}

// Has reports whether the cache holds the blob with this sha256 (hex).
func (c *Cache) Has(hexDigest string) bool {
	_, err := os.Stat(c.blobPath(hexDigest))
	return err == nil
}

func (c *Cache) init() error {
	for _, d := range []string{filepath.Join(c.Dir, "blobs", "sha256"), filepath.Join(c.Dir, "partial"), filepath.Join(c.Dir, "tmp")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return fmt.Errorf("creating cache %s: %w", c.Dir, err)
		}
	}
	return nil
}

// Counters count what a build really fetched over the network.
type Counters struct {
	BlobsFetched atomic.Int64 // registry blob GETs that went to the network
	BlobBytes    atomic.Int64 // bytes of those blobs
	BlobsCached  atomic.Int64 // registry blob GETs answered from the cache
}

// blobPathRe matches the registry API path of a blob.
var blobPathRe = regexp.MustCompile(`^/v2/.+/blobs/sha256:([0-9a-f]{64})$`)

// cachingTransport answers registry blob GETs from the cache and fills the cache from the
// network, verifying each blob's digest before it is kept. Blob URLs that redirect (to object
// storage, as many registries do) are followed: the digest goes with the redirect.
type cachingTransport struct {
	cache *Cache
	next  http.RoundTripper
	count *Counters

	mu        sync.Mutex
	redirects map[string]string // redirect target URL -> blob digest (hex)
}

func newCachingTransport(c *Cache, next http.RoundTripper, count *Counters) *cachingTransport {
	return &cachingTransport{cache: c, next: next, count: count, redirects: map[string]string{}}
}

func (t *cachingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet || req.Header.Get("Range") != "" {
		return t.next.RoundTrip(req)
	}
	hexDigest := ""
	if m := blobPathRe.FindStringSubmatch(req.URL.Path); m != nil {
		hexDigest = m[1]
	} else {
		t.mu.Lock()
		hexDigest = t.redirects[req.URL.String()]
		delete(t.redirects, req.URL.String())
		t.mu.Unlock()
	}
	if hexDigest == "" {
		return t.next.RoundTrip(req)
	}
	if f, err := os.Open(t.cache.blobPath(hexDigest)); err == nil {
		info, err := f.Stat()
		if err == nil {
			t.count.BlobsCached.Add(1)
			return &http.Response{
				Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
				Header:        http.Header{"Content-Length": {strconv.FormatInt(info.Size(), 10)}, "Docker-Content-Digest": {"sha256:" + hexDigest}},
				ContentLength: info.Size(), Body: f, Request: req,
			}, nil
		}
		_ = f.Close()
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		if loc, err := resp.Location(); err == nil {
			t.mu.Lock()
			t.redirects[loc.String()] = hexDigest
			t.mu.Unlock()
		}
	case resp.StatusCode == http.StatusOK:
		t.count.BlobsFetched.Add(1)
		resp.Body = t.tee(hexDigest, resp.Body)
	}
	return resp, nil
}

// tee copies a blob into the cache as it is read, keeping it only if it is complete and its
// digest matches.
func (t *cachingTransport) tee(hexDigest string, body io.ReadCloser) io.ReadCloser {
	tmp, err := os.CreateTemp(filepath.Join(t.cache.Dir, "tmp"), hexDigest+".*")
	if err != nil {
		return body // no cache this time; the build goes on
	}
	return &teeBody{body: body, tmp: tmp, h: sha256.New(), want: hexDigest, dst: t.cache.blobPath(hexDigest), count: t.count}
}

type teeBody struct {
	body  io.ReadCloser
	tmp   *os.File
	h     hash.Hash
	want  string
	dst   string
	count *Counters
	n     int64
	done  bool
}

func (b *teeBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if n > 0 && b.tmp != nil {
		b.h.Write(p[:n])
		if _, werr := b.tmp.Write(p[:n]); werr != nil {
			b.drop()
		}
		b.n += int64(n)
		b.count.BlobBytes.Add(int64(n))
	}
	if errors.Is(err, io.EOF) {
		b.done = true
	}
	return n, err
}

func (b *teeBody) drop() {
	if b.tmp != nil {
		_ = b.tmp.Close()
		_ = os.Remove(b.tmp.Name())
		b.tmp = nil
	}
}

func (b *teeBody) Close() error {
	err := b.body.Close()
	if b.tmp == nil {
		return err
	}
	if !b.done || hex.EncodeToString(b.h.Sum(nil)) != b.want {
		b.drop()
		return err
	}
	if cerr := b.tmp.Close(); cerr != nil {
		_ = os.Remove(b.tmp.Name())
		return err
	}
	// The store may hard-link this file (see airgap.StoreConfig.LinkFrom): give it the mode
	// the store's own files have.
	if cerr := os.Chmod(b.tmp.Name(), 0o644); cerr != nil { //nolint:gosec // read by the store and the ISO
		_ = os.Remove(b.tmp.Name())
		return err
	}
	if rerr := os.Rename(b.tmp.Name(), b.dst); rerr != nil {
		_ = os.Remove(b.tmp.Name())
	}
	return err
}
