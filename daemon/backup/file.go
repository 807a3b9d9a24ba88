package backup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ArchiveFile is an archive being written to a path: a hidden temporary file beside it (mode 0600:
// an archive holds token hashes) until Commit renames it into place, so that the path holds a
// whole archive or what it held before.
type ArchiveFile struct {
	f    *os.File
	path string
}

// CreateArchive starts writing an archive to path.
func CreateArchive(path string) (*ArchiveFile, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("writing the backup: %w", err)
	}
	return &ArchiveFile{f: f, path: path}, nil
}

// Write implements io.Writer.
func (f *ArchiveFile) Write(p []byte) (int, error) { return f.f.Write(p) }

// Commit syncs the archive and renames it to its path.
func (f *ArchiveFile) Commit() error {
	err := errors.Join(f.f.Sync(), f.f.Close())
	if err == nil {
		err = os.Rename(f.f.Name(), f.path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(f.path))
	}
	if err != nil {
		_ = os.Remove(f.f.Name())
		return fmt.Errorf("writing the backup %s: %w", f.path, err)
	}
	return nil
}

// Abort drops what was written; the path keeps what it held.
func (f *ArchiveFile) Abort() {
	_ = f.f.Close()
	_ = os.Remove(f.f.Name())
}
