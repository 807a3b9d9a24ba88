package airgap

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ErrNoArtifact is returned (wrapped) when no store holds the artifact asked for.
var ErrNoArtifact = errors.New("airgap: no such artifact")

// Find returns the artifact of kind whose name (as build.toml wrote it) is name.
func (ix *Index) Find(kind Kind, name string) (Artifact, bool) {
	for _, a := range ix.Artifacts {
		if a.Kind == kind && a.Name == name {
			return a, true
		}
	}
	return Artifact{}, false
}

// Payload is the one file an OS image, netboot asset or file artifact carries: its layer.
type Payload struct {
	Digest    digest.Digest
	Size      int64
	MediaType string // e.g. application/vnd.cairn.netboot.kernel
	Path      string // the blob's content in a store, to serve or read
}

// BlobPath is where the store in dir keeps the content of blob d (which may not be there).
func BlobPath(dir string, d digest.Digest) string {
	return filepath.Join(append([]string{dir, layout}, blobData(d)...)...)
}

// ReadPayload reads the manifest of a (an artifact of one layer: an OS image, netboot asset
// or file) and returns its layer. It looks for each blob in dirs in order (a medium store,
// then an upper one), checks the manifest's digest and the layer's size on disk, and does not
// read the layer itself: Verify hashes every blob.
func ReadPayload(a Artifact, dirs ...string) (Payload, error) {
	if a.Kind == KindImage {
		return Payload{}, fmt.Errorf("%s is a container image, not a file artifact", a.Name)
	}
	raw, err := readBlob(a.Digest, dirs)
	if err != nil {
		return Payload{}, fmt.Errorf("artifact %s: manifest: %w", a.Name, err)
	}
	if digest.FromBytes(raw) != a.Digest {
		return Payload{}, fmt.Errorf("artifact %s: manifest %s does not match its digest; run cairn bundle verify", a.Name, a.Digest)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return Payload{}, fmt.Errorf("artifact %s: manifest %s: %w", a.Name, a.Digest, err)
	}
	if len(m.Layers) != 1 {
		return Payload{}, fmt.Errorf("artifact %s: manifest %s has %d layers, want 1", a.Name, a.Digest, len(m.Layers))
	}
	l := m.Layers[0]
	if err := l.Digest.Validate(); err != nil {
		return Payload{}, fmt.Errorf("artifact %s: layer digest %q: %w", a.Name, l.Digest, err)
	}
	for _, dir := range dirs {
		p := BlobPath(dir, l.Digest)
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return Payload{}, fmt.Errorf("artifact %s: %w", a.Name, err)
		}
		if fi.Size() != l.Size {
			return Payload{}, fmt.Errorf("artifact %s: blob %s holds %d bytes, its manifest says %d; run cairn bundle verify", a.Name, l.Digest, fi.Size(), l.Size)
		}
		return Payload{Digest: l.Digest, Size: l.Size, MediaType: l.MediaType, Path: p}, nil
	}
	return Payload{}, fmt.Errorf("artifact %s: blob %s is in no store", a.Name, l.Digest)
}

// readBlob reads a small blob (a manifest) from the first of dirs that has it.
func readBlob(d digest.Digest, dirs []string) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	for _, dir := range dirs {
		b, err := readSmall(BlobPath(dir, d))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		return b, err
	}
	return nil, fmt.Errorf("blob %s is in no store", d)
}

// Stores reads file artifacts from a list of stores, the first that names an artifact winning:
// the daemon's medium store, then its upper store. It reads each store's bundle.json again
// when the file changes (cairn bundle load rewrites the upper store's), and treats a store
// without one as empty. It is safe for concurrent use.
type Stores struct {
	dirs []string

	mu      sync.Mutex
	indexes map[string]cachedIndex
}

type cachedIndex struct {
	mod  time.Time
	size int64
	ix   *Index
}

// NewStores reads artifacts from dirs, in order; an empty dir (no upper store) is skipped.
func NewStores(dirs ...string) *Stores {
	var keep []string
	for _, d := range dirs {
		if d != "" {
			keep = append(keep, d)
		}
	}
	return &Stores{dirs: keep, indexes: map[string]cachedIndex{}}
}

// Find returns the artifact of kind named name and its payload, from the first store whose
// index names it. It wraps ErrNoArtifact when none does.
func (s *Stores) Find(kind Kind, name string) (Artifact, Payload, error) {
	for _, dir := range s.dirs {
		ix, err := s.index(dir)
		if err != nil {
			return Artifact{}, Payload{}, err
		}
		if ix == nil {
			continue
		}
		if a, ok := ix.Find(kind, name); ok {
			p, err := ReadPayload(a, s.dirs...)
			return a, p, err
		}
	}
	return Artifact{}, Payload{}, fmt.Errorf("%w: no %s artifact named %q in the store; add it to build.toml and build again", ErrNoArtifact, kind, name)
}

// index returns dir's index, nil when dir has no bundle.json.
func (s *Stores) index(dir string) (*Index, error) {
	fi, err := os.Stat(filepath.Join(dir, IndexFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading bundle index: %w", err)
	}
	s.mu.Lock()
	c, ok := s.indexes[dir]
	s.mu.Unlock()
	if ok && c.mod.Equal(fi.ModTime()) && c.size == fi.Size() {
		return c.ix, nil
	}
	ix, _, err := ReadIndex(dir)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.indexes[dir] = cachedIndex{mod: fi.ModTime(), size: fi.Size(), ix: ix}
	s.mu.Unlock()
	return ix, nil
}
