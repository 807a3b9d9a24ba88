package backup

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// ErrDamaged is returned (wrapped, with every problem found) for an archive that fails its
// checks: truncated, corrupt, an entry whose size or sha256 is not the manifest's, an entry
// the manifest does not list or one it lists that is missing.
var ErrDamaged = errors.New("backup: the archive fails its checks")

// maxManifest bounds the manifest read into memory; one of a very large store stays well
// below it.
const maxManifest = 256 << 20

// Verify reads an archive to its end and checks every entry against its manifest, writing
// nothing. It returns the manifest, or an error wrapping ErrDamaged that names each entry
// that fails and how.
func Verify(r io.Reader) (*Manifest, error) { return readArchive(r, nil) }

// Verifier checks an archive as it is written through it, as Verify does: writing a backup
// through one proves, once Close says so, that what was written restores.
type Verifier struct {
	pw   *io.PipeWriter
	done chan struct{}
	m    *Manifest
	err  error
	sum  hash.Hash
	n    int64
}

// NewVerifier returns a Verifier waiting for an archive's first byte.
func NewVerifier() *Verifier {
	pr, pw := io.Pipe()
	v := &Verifier{pw: pw, done: make(chan struct{}), sum: sha256.New()}
	go func() {
		defer close(v.done)
		v.m, v.err = readArchive(pr, nil)
		if v.err != nil {
			pr.CloseWithError(v.err) // the writer stops at its next write
		} else {
			_, _ = io.Copy(io.Discard, pr)
		}
	}()
	return v
}

// Write implements io.Writer; it fails once the archive is known to be damaged.
func (v *Verifier) Write(p []byte) (int, error) {
	n, err := v.pw.Write(p)
	v.sum.Write(p[:n])
	v.n += int64(n)
	return n, err
}

// Close ends the archive and returns its manifest, or why it is damaged.
func (v *Verifier) Close() (*Manifest, error) {
	_ = v.pw.Close()
	<-v.done
	return v.m, v.err
}

// Size is how many bytes were written.
func (v *Verifier) Size() int64 { return v.n }

// SHA256 is the hex sha256 of what was written: of the archive file.
func (v *Verifier) SHA256() string { return hex.EncodeToString(v.sum.Sum(nil)) }

// sink receives each entry of an archive as it is read, its content (nil for a directory)
// already checked against nothing: only once readArchive returns nil is it known sound.
type sink func(name string, content io.Reader) error

// readArchive reads an archive, hands each entry but the manifest to to (when not nil), and
// checks what it read against the manifest. An error of to is returned as it is; every
// problem of the archive is reported together, wrapping ErrDamaged.
func readArchive(r io.Reader, to sink) (*Manifest, error) {
	zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	var (
		m        *Manifest
		seen     = map[string]Entry{}
		order    []string
		last     string // the entry last read whole, for messages
		problems []string
	)
	damaged := func() error {
		return fmt.Errorf("%w:\n  %s", ErrDamaged, strings.Join(problems, "\n  "))
	}
	after := func() string {
		if last == "" {
			return "at its start"
		}
		return "after entry " + last
	}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, tar.ErrInsecurePath) && hdr != nil {
			err = nil // checkName says what is wrong with it
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("the archive cannot be read %s: %v: it is truncated or corrupt", after(), err))
			break
		}
		name := hdr.Name
		if m != nil {
			problems = append(problems, fmt.Sprintf("entry %s comes after %s, which ends an archive", name, ManifestFile))
			return nil, damaged()
		}
		if err := checkName(hdr); err != nil {
			problems = append(problems, err.Error())
			return nil, damaged()
		}
		if _, dup := seen[name]; dup {
			problems = append(problems, fmt.Sprintf("entry %s is in the archive twice", name))
			return nil, damaged()
		}
		if name == ManifestFile {
			b, err := io.ReadAll(io.LimitReader(tr, maxManifest+1))
			if err != nil {
				problems = append(problems, fmt.Sprintf("entry %s cannot be read: %v: the archive is truncated or corrupt", name, err))
				break
			}
			var mm Manifest
			switch dec := json.NewDecoder(bytes.NewReader(b)); {
			case len(b) > maxManifest:
				problems = append(problems, fmt.Sprintf("entry %s is larger than %d MiB", name, maxManifest>>20))
			case dec.Decode(&mm) != nil || mm.Format < 1:
				problems = append(problems, fmt.Sprintf("entry %s is not a cairn backup manifest", name))
			case mm.Format > FormatVersion:
				return nil, fmt.Errorf("the archive has format %d and this cairn reads format %d at most: restore it with the cairn that wrote it (%s) or a newer one", mm.Format, FormatVersion, mm.Cairn)
			}
			if len(problems) > 0 {
				return nil, damaged()
			}
			m, last = &mm, name
			continue
		}
		e := Entry{Path: name}
		if hdr.Typeflag == tar.TypeReg {
			h := sha256.New()
			in := &readRecorder{r: io.TeeReader(tr, h)}
			if to != nil {
				err = to(name, in)
			}
			if err == nil {
				_, err = io.Copy(io.Discard, in) // what to left unread is hashed all the same
			}
			if in.err != nil {
				problems = append(problems, fmt.Sprintf("entry %s cannot be read: %v: the archive is truncated or corrupt", name, in.err))
				break
			}
			if err != nil {
				return nil, err
			}
			e.Size, e.SHA256 = in.n, hex.EncodeToString(h.Sum(nil))
		} else if to != nil {
			if err := to(name, nil); err != nil {
				return nil, err
			}
		}
		seen[name] = e
		order = append(order, name)
		last = name
	}
	if len(problems) == 0 {
		// After the tar's end there is nothing but its padding; reading on to the end of the
		// zstd stream also checks its last checksum.
		if err := trailing(zr); err != nil {
			problems = append(problems, fmt.Sprintf("the archive %s: %v", after(), err))
		}
	}
	if m == nil {
		if len(problems) == 0 {
			problems = append(problems, fmt.Sprintf("the archive ends %s without its %s: it is truncated, or not a cairn backup", after(), ManifestFile))
		}
		return nil, damaged()
	}
	problems = append(m.check(seen, order), problems...)
	if len(problems) > 0 {
		return nil, damaged()
	}
	return m, nil
}

// checkName refuses an entry that is neither a regular file nor a directory, or whose name
// is not one an archive holds: it could write outside the destination.
func checkName(hdr *tar.Header) error {
	name := hdr.Name
	bare := strings.TrimSuffix(name, "/")
	switch {
	case hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeDir:
		return fmt.Errorf("entry %s is neither a file nor a directory (tar type %q)", name, hdr.Typeflag)
	case (hdr.Typeflag == tar.TypeDir) != strings.HasSuffix(name, "/"):
		return fmt.Errorf("entry %s: a directory's name, and only a directory's, ends in /", name)
	case bare == "" || path.Clean(bare) != bare || strings.HasPrefix(bare, "/") || bare == ".." || strings.HasPrefix(bare, "../"):
		return fmt.Errorf("entry %s is not a clean relative path", name)
	case name == StateFile, name == ManifestFile, name == SiteDir, name == StoreDir:
		return nil
	case strings.HasPrefix(name, SiteDir), strings.HasPrefix(name, StoreDir):
		return nil
	}
	return fmt.Errorf("entry %s is none of %s, %s, %s… and %s…", name, StateFile, ManifestFile, SiteDir, StoreDir)
}

// trailing reads what is left of the stream and wants zeros only.
func trailing(r io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if bytes.ContainsFunc(buf[:n], func(r rune) bool { return r != 0 }) {
			return errors.New("data follows the end of the tar archive")
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("cannot be read to its end: %w: it is truncated or corrupt", err)
		}
	}
}

// check compares the entries read, in archive order, with the manifest's.
func (m *Manifest) check(seen map[string]Entry, order []string) []string {
	var problems []string
	listed := make(map[string]Entry, len(m.Entries))
	for _, e := range m.Entries {
		if _, dup := listed[e.Path]; dup {
			problems = append(problems, fmt.Sprintf("entry %s is in the manifest twice", e.Path))
		}
		listed[e.Path] = e
	}
	for _, p := range order {
		got := seen[p]
		want, ok := listed[p]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("entry %s is not in the manifest", p))
		case got.SHA256 != want.SHA256:
			problems = append(problems, fmt.Sprintf("entry %s: sha256 %s (%d bytes), the manifest says %s (%d bytes)", p, got.SHA256, got.Size, want.SHA256, want.Size))
		case got.Size != want.Size:
			problems = append(problems, fmt.Sprintf("entry %s: %d bytes, the manifest says %d", p, got.Size, want.Size))
		}
	}
	for _, e := range m.Entries {
		if _, ok := seen[e.Path]; !ok {
			problems = append(problems, fmt.Sprintf("entry %s is in the manifest but not in the archive", e.Path))
		}
	}
	return problems
}

// readRecorder counts what is read through it and keeps the first read error: the archive's
// fault, as opposed to the sink's.
type readRecorder struct {
	r   io.Reader
	n   int64
	err error
}

func (r *readRecorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n += int64(n)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}
