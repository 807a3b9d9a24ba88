package tftp

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"slices"

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
		p, err := airgap.ReadPayload(a, dir)
		if err != nil {
			return nil, fmt.Errorf("tftp: %w", err)
		}
		if p.MediaType != airgap.MediaTypeNetbootPrefix+string(airgap.NetbootIPXE) {
			continue // a kernel or an initramfs: HTTP serves those
		}
		if p.Size > maxBinary {
			return nil, fmt.Errorf("tftp: netboot artifact %s is %d bytes; an iPXE binary is at most %d MiB: check its type in build.toml", a.Name, p.Size, maxBinary>>20)
		}
		if _, _, ok := checkName(a.Name); !ok || s.files[a.Name] != nil {
			continue
		}
		b, err := os.ReadFile(p.Path)
		if err != nil {
			return nil, fmt.Errorf("tftp: netboot artifact %s: %w", a.Name, err)
		}
		// What is sent is exactly what the index signs: checked here once, then held.
		if got := p.Digest.Algorithm().FromBytes(b); got != p.Digest {
			return nil, fmt.Errorf("tftp: netboot artifact %s: blob %s holds content of digest %s; run cairn bundle verify", a.Name, p.Digest, got)
		}
		s.files[a.Name] = b
	}
	return s, nil
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
