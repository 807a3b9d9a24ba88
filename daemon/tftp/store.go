package tftp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cairn-appliance/cairn/airgap"
)

// maxBinary bounds what Store holds in memory per file; iPXE binaries are about 1 MiB.
const maxBinary = 64 << 20

// Store serves the iPXE binaries of a sealed store: the netboot artifacts of type ipxe that
// its bundle.json lists, each under its artifact name (ipxe.efi, undionly.kpxe …). Nothing
// else in the store can be named. The binaries are read, checked against their digests and
// kept in memory when the store is opened, so a transfer sends exactly the bytes the index
// signs, with no file to open.
type Store struct {
	files map[string][]byte
}

// OpenStore reads the iPXE binaries of the store in dir. A store without any is not an error:
// the server then answers every name with "file not found".
func OpenStore(dir string) (*Store, error) {
	ix, _, err := airgap.ReadIndex(dir)
	if err != nil {
		return nil, fmt.Errorf("tftp: %w", err)
	}
	s := &Store{files: map[string][]byte{}}
	for _, a := range ix.Artifacts {
		if a.Kind != airgap.KindNetboot || a.ArtifactType != airgap.ArtifactTypeNetboot {
			continue
		}
		raw, err := readBlob(dir, a.Digest, 1<<20)
		if err != nil {
			return nil, fmt.Errorf("tftp: netboot artifact %s: manifest: %w", a.Name, err)
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("tftp: netboot artifact %s: manifest %s: %w", a.Name, a.Digest, err)
		}
		if len(m.Layers) != 1 || m.Layers[0].MediaType != airgap.MediaTypeNetbootPrefix+string(airgap.NetbootIPXE) {
			continue // a kernel or an initramfs: HTTP serves those
		}
		l := m.Layers[0]
		if l.Size > maxBinary {
			return nil, fmt.Errorf("tftp: netboot artifact %s is %d bytes; an iPXE binary is at most %d MiB: check its type in build.toml", a.Name, l.Size, maxBinary>>20)
		}
		if _, _, ok := checkName(a.Name); !ok || s.files[a.Name] != nil {
			continue
		}
		b, err := readBlob(dir, l.Digest, l.Size)
		if err != nil {
			return nil, fmt.Errorf("tftp: netboot artifact %s: %w", a.Name, err)
		}
		if int64(len(b)) != l.Size {
			return nil, fmt.Errorf("tftp: netboot artifact %s: blob %s is %d bytes, its manifest says %d; run cairn bundle verify", a.Name, l.Digest, len(b), l.Size)
		}
		s.files[a.Name] = b
	}
	return s, nil
}

// readBlob reads a blob of at most limit bytes and checks its digest.
func readBlob(dir string, d digest.Digest, limit int64) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	p := filepath.Join(dir, "docker", "registry", "v2", "blobs", d.Algorithm().String(), d.Encoded()[:2], d.Encoded(), "data")
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("blob %s is %d bytes, more than the %d expected", d, fi.Size(), limit)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	if got := d.Algorithm().FromBytes(b); got != d {
		return nil, fmt.Errorf("blob %s holds content of digest %s; run cairn bundle verify", d, got)
	}
	return b, nil
}

// Names lists the file names the store serves, sorted.
func (s *Store) Names() []string {
	names := make([]string, 0, len(s.files))
	for n := range s.files {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Open implements Files.
func (s *Store) Open(name string) (File, error) {
	b, ok := s.files[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return memFile{bytes.NewReader(b)}, nil
}

type memFile struct{ *bytes.Reader }

func (memFile) Close() error { return nil }
