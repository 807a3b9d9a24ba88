package backup

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/cairn-appliance/cairn/daemon/state"
)

// FormatVersion is the layout of the archives this cairn writes; Restore refuses a newer one.
const FormatVersion = 1

// The entries of an archive: the state file, the manifest, and the directories under which
// the site and the upper store are.
const (
	StateFile    = "state.db"
	ManifestFile = "MANIFEST.json"
	SiteDir      = "site/"
	StoreDir     = "store/"
)

// epoch is the modification time of every entry: an archive says nothing of when it was made.
var epoch = time.Unix(0, 0)

// Manifest is the last entry of an archive: what it holds, for Restore to check and for
// people to read.
type Manifest struct {
	Format int    `json:"format"`
	Cairn  string `json:"cairn,omitempty"` // the version of cairn that wrote it
	// State summarises the state file, as read from the same snapshot.
	State Summary `json:"state"`
	// SiteFingerprint is the watcher's fingerprint of site/ ("" when there was no site): when
	// it is State.Generation.AttemptedFingerprint, the site is the one the state last loaded.
	SiteFingerprint string `json:"site_fingerprint,omitempty"`
	// Entries lists every other entry in archive order: files with their size and sha256,
	// directories (paths ending in "/") alone.
	Entries []Entry `json:"entries"`
}

// Summary is what a state file holds, in numbers.
type Summary struct {
	Hosts      int              `json:"hosts"`
	Events     int              `json:"events"`
	LastEvent  uint64           `json:"last_event,omitempty"` // the Seq of the newest event
	Generation state.Generation `json:"generation"`
}

// Entry is one entry of an archive.
type Entry struct {
	Path   string `json:"path"`
	Size   int64  `json:"size,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
}

// Dir reports whether the entry is a directory.
func (e Entry) Dir() bool { return strings.HasSuffix(e.Path, "/") }

// SiteMatches reports whether the archive's site is the one its state last loaded: a daemon
// started on them finds nothing to do that the source had not done.
func (m *Manifest) SiteMatches() bool {
	return m.SiteFingerprint == m.State.Generation.AttemptedFingerprint
}

// Files counts the files of the manifest under prefix (SiteDir, StoreDir, or "" for all).
func (m *Manifest) Files(prefix string) int {
	n := 0
	for _, e := range m.Entries {
		if !e.Dir() && strings.HasPrefix(e.Path, prefix) {
			n++
		}
	}
	return n
}

// Blobs counts the blobs of the upper store in the manifest (the data files of
// docker/registry/v2/blobs).
func (m *Manifest) Blobs() int {
	n := 0
	for _, e := range m.Entries {
		if isBlob(e.Path) {
			n++
		}
	}
	return n
}

func isBlob(p string) bool {
	return strings.HasPrefix(p, StoreDir+"docker/registry/v2/blobs/") && path.Base(p) == "data"
}

// Modes of the entries: the state holds token hashes, so only its owner reads it.
const (
	modeState = 0o600
	modeFile  = 0o644
	modeDir   = 0o755
)

// header is the normalised tar header of an entry: nothing in it depends on who wrote the
// files, when, or with which umask.
func header(name string, size, mode int64) *tar.Header {
	h := &tar.Header{Name: name, Size: size, Mode: mode, ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if strings.HasSuffix(name, "/") {
		h.Typeflag, h.Size = tar.TypeDir, 0
	}
	return h
}

// item is one entry to write: a directory, or a file with its size and a way to write it.
type item struct {
	path  string // archive path; a directory's ends in "/"
	size  int64
	mode  int64
	write func(io.Writer) (int64, error) // nil for a directory
}

// encoderOptions make the compressed bytes a function of the tar bytes alone: one encoder,
// no concurrency, the default level (zstd's level 3).
func encoderOptions() []zstd.EOption {
	return []zstd.EOption{zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderCRC(true)}
}

// writeArchive writes items (sorted here) and then the manifest m, its Entries filled in.
func writeArchive(ctx context.Context, w io.Writer, items []item, m *Manifest) (err error) {
	slices.SortFunc(items, func(a, b item) int { return strings.Compare(a.path, b.path) })
	zw, err := zstd.NewWriter(w, encoderOptions()...)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			zw.Reset(io.Discard) // drop what is pending; the writer is not used again
		}
	}()
	tw := tar.NewWriter(zw)
	m.Entries = make([]Entry, 0, len(items))
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return err
		}
		e, err := writeItem(tw, it)
		if err != nil {
			return fmt.Errorf("writing %s: %w", it.path, err)
		}
		m.Entries = append(m.Entries, e)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if err := tw.WriteHeader(header(ManifestFile, int64(len(b)), modeFile)); err != nil {
		return fmt.Errorf("writing %s: %w", ManifestFile, err)
	}
	if _, err := tw.Write(b); err != nil {
		return fmt.Errorf("writing %s: %w", ManifestFile, err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("ending the archive: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("ending the archive: %w", err)
	}
	return nil
}

func writeItem(tw *tar.Writer, it item) (Entry, error) {
	if err := tw.WriteHeader(header(it.path, it.size, it.mode)); err != nil {
		return Entry{}, err
	}
	e := Entry{Path: it.path}
	if it.write == nil {
		return e, nil
	}
	h := sha256.New()
	n, err := it.write(io.MultiWriter(tw, h))
	if err != nil {
		return e, err
	}
	if n != it.size {
		return e, fmt.Errorf("%d bytes written, %d expected: it changed while being backed up", n, it.size)
	}
	e.Size, e.SHA256 = n, hex.EncodeToString(h.Sum(nil))
	return e, nil
}

// siteItems are the entries of a site copy.
func siteItems(s *Site) []item {
	if s == nil || s.Missing {
		return nil
	}
	items := []item{{path: SiteDir, mode: modeDir}}
	for _, d := range s.Dirs {
		items = append(items, item{path: SiteDir + d + "/", mode: modeDir})
	}
	for _, f := range s.Files {
		data := f.Data
		items = append(items, item{path: SiteDir + f.Path, size: int64(len(data)), mode: modeFile, write: func(w io.Writer) (int64, error) {
			n, err := w.Write(data)
			return int64(n), err
		}})
	}
	return items
}

// storeItems lists the upper store at dir: every directory and regular file. A missing
// directory is no store at all. Its files are read when they are written, not now.
func storeItems(dir string) ([]item, error) {
	if dir == "" {
		return nil, nil
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	var items []item
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		name := StoreDir
		if rel != "." {
			name += filepath.ToSlash(rel)
		}
		switch {
		case d.IsDir():
			if rel != "." {
				name += "/"
			}
			items = append(items, item{path: name, mode: modeDir})
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			items = append(items, item{path: name, size: info.Size(), mode: modeFile, write: func(w io.Writer) (int64, error) {
				f, err := os.Open(p) //nolint:gosec // a file of the upper store, listed just now
				if err != nil {
					return 0, err
				}
				defer f.Close()
				n, err := io.CopyN(w, f, info.Size())
				if errors.Is(err, io.EOF) {
					err = fmt.Errorf("%d bytes read, %d expected: it changed while being backed up", n, info.Size())
				}
				return n, err
			}})
		default:
			return fmt.Errorf("%s is a %s; the upper store holds only the files and directories cairn writes: remove it", p, d.Type())
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the upper store: %w", err)
	}
	return items, nil
}
