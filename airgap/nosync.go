package airgap

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"golang.org/x/sys/unix"
)

// writeDriver is distribution's filesystem driver for writing a new store, less its fsync after
// every file: a store is written once, in a directory nobody serves yet, and Seal makes it
// durable with one syncfs. Every small file (a link, a tag, a manifest) otherwise costs two
// fsyncs, which is most of the time a rebuild from a warm cache takes.
type writeDriver struct {
	storagedriver.StorageDriver
	root string
}

func (d writeDriver) fullPath(p string) string {
	return filepath.Join(d.root, filepath.FromSlash(path.Clean("/"+p)))
}

// PutContent writes content beside the target and renames it into place, as the filesystem
// driver does, without syncing.
func (d writeDriver) PutContent(_ context.Context, p string, content []byte) error {
	full := d.fullPath(p)
	if err := os.MkdirAll(filepath.Dir(full), 0o777); err != nil { //nolint:gosec // G301: distribution's own modes
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(full), "."+filepath.Base(full)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = tmp.Write(content)
	err = errors.Join(err, tmp.Chmod(0o666&^umask), tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), full)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
	}
	return err
}

// Writer implements storagedriver.StorageDriver with an unsynced writer.
func (d writeDriver) Writer(_ context.Context, p string, appendTo bool) (storagedriver.FileWriter, error) {
	full := d.fullPath(p)
	if err := os.MkdirAll(filepath.Dir(full), 0o777); err != nil { //nolint:gosec // G301: distribution's own modes
		return nil, err
	}
	f, err := os.OpenFile(full, os.O_WRONLY|os.O_CREATE, 0o666) //nolint:gosec // G302: distribution's own modes
	if err != nil {
		return nil, err
	}
	var size int64
	if appendTo {
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			_ = f.Close()
			return nil, err
		}
	} else if err := f.Truncate(0); err != nil {
		_ = f.Close()
		return nil, err
	}
	return &unsyncedWriter{f: f, bw: bufio.NewWriter(f), size: size}, nil
}

type unsyncedWriter struct {
	f                           *os.File
	bw                          *bufio.Writer
	size                        int64
	closed, committed, canceled bool
}

var errWriterDone = errors.New("writer already closed, committed or cancelled")

func (w *unsyncedWriter) Write(p []byte) (int, error) {
	if w.closed || w.committed || w.canceled {
		return 0, errWriterDone
	}
	n, err := w.bw.Write(p)
	w.size += int64(n)
	return n, err
}

func (w *unsyncedWriter) Size() int64 { return w.size }

func (w *unsyncedWriter) Close() error {
	if w.closed {
		return errWriterDone
	}
	w.closed = true
	if w.committed {
		return w.f.Close()
	}
	return errors.Join(w.bw.Flush(), w.f.Close())
}

func (w *unsyncedWriter) Cancel(context.Context) error {
	if w.closed {
		return errWriterDone
	}
	w.canceled, w.closed = true, true
	_ = w.f.Close()
	return os.Remove(w.f.Name())
}

func (w *unsyncedWriter) Commit(context.Context) error {
	if w.closed || w.committed || w.canceled {
		return errWriterDone
	}
	w.committed = true
	return w.bw.Flush()
}

// syncStore flushes the filesystem holding dir: one syncfs for every unsynced write.
func syncStore(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd())) //nolint:gosec // a file descriptor fits an int
}

// umask is the process's file mode creation mask, read once at start.
var umask = func() os.FileMode {
	m := unix.Umask(0)
	unix.Umask(m)
	return os.FileMode(m) //nolint:gosec // a umask is 9 bits
}()
