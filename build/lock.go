package build

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/pelletier/go-toml/v2"

	"github.com/cairn-appliance/cairn/site/tomlpos"
)

// LockVersion is the format version of build.lock.
const LockVersion = 1

// Lock is build.lock: what each reference of build.toml resolved to. With it, a build fetches
// exactly the same bytes later and elsewhere (cairn build --locked).
type Lock struct {
	Version    int            `toml:"version" required:"true" doc:"Format version of the lock file."`
	Containers []LockedImage  `toml:"container" doc:"Container images, by ref."`
	Sources    []LockedSource `toml:"source" doc:"Files fetched by URL, by kind and name."`
}

// LockedImage pins one [[container]].
type LockedImage struct {
	Ref       string           `toml:"ref" required:"true" doc:"The ref as build.toml writes it."`
	Digest    string           `toml:"digest" required:"true" doc:"Digest of the manifest or index the ref resolved to."`
	MediaType string           `toml:"media_type" required:"true" doc:"Media type of that manifest or index."`
	Platforms []LockedPlatform `toml:"platform" doc:"The platform images carried."`
}

// LockedPlatform is one platform of a locked image.
type LockedPlatform struct {
	Platform string `toml:"platform" required:"true" doc:"OS/ARCH[/VARIANT]."`
	Digest   string `toml:"digest" required:"true" doc:"Digest of the platform's image manifest."`
	Size     int64  `toml:"size" doc:"Bytes of its manifest, config and layers."`
}

// LockedSource pins one [[os_image]], [[netboot]] or [[file]], or a package of [agent]
// (kind agent, name kernel or firmware[N]).
type LockedSource struct {
	Kind   string `toml:"kind" required:"true" enum:"os_image|netboot|file|agent" doc:"Which table of build.toml."`
	Name   string `toml:"name" required:"true" doc:"Its name; for [agent], the key: kernel, firmware[0]."`
	Source string `toml:"source" required:"true" doc:"Its source as build.toml writes it."`
	SHA256 string `toml:"sha256" required:"true" doc:"SHA-256 of the file."`
	Size   int64  `toml:"size" doc:"Its size in bytes."`
}

var lockDecoder = tomlpos.Decoder{}

// ReadLock reads a build.lock. A missing file is (nil, nil).
func ReadLock(path string) (*Lock, error) {
	src, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading lock file: %w", err)
	}
	doc, perr := tomlpos.Parse(path, src)
	if perr != nil {
		return nil, tomlpos.Errors{perr}
	}
	var l Lock
	if errs := lockDecoder.Decode(doc, &l, "lock file"); len(errs) > 0 {
		errs.Sort()
		return nil, errs
	}
	if l.Version != LockVersion {
		return nil, tomlpos.Errors{doc.ErrAt("version", false, fmt.Sprintf("lock format %d is not %d", l.Version, LockVersion), "delete the lock file and run cairn build again to write a new one")}
	}
	return &l, nil
}

// Marshal returns the lock as TOML, sorted, so that the same pins give the same bytes.
func (l *Lock) Marshal() ([]byte, error) {
	out := *l
	out.Version = LockVersion
	out.Containers = slices.Clone(l.Containers)
	slices.SortFunc(out.Containers, func(a, b LockedImage) int { return cmp.Compare(a.Ref, b.Ref) })
	for i := range out.Containers {
		ps := slices.Clone(out.Containers[i].Platforms)
		slices.SortFunc(ps, func(a, b LockedPlatform) int { return cmp.Compare(a.Platform, b.Platform) })
		out.Containers[i].Platforms = ps
	}
	out.Sources = slices.Clone(l.Sources)
	slices.SortFunc(out.Sources, func(a, b LockedSource) int { return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name)) })
	var b bytes.Buffer
	b.WriteString("# build.lock: what build.toml resolved to. Written by cairn build; commit it beside build.toml.\n")
	b.WriteString("# cairn build --locked builds exactly these bytes.\n\n")
	enc := toml.NewEncoder(&b)
	enc.SetIndentTables(false)
	if err := enc.Encode(out); err != nil {
		return nil, fmt.Errorf("writing lock file: %w", err)
	}
	return b.Bytes(), nil
}

// Write writes the lock to path atomically.
func (l *Lock) Write(path string) error {
	b, err := l.Marshal()
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return nil
	}
	return writeAtomic(path, b)
}

func (l *Lock) image(ref string) *LockedImage {
	if l == nil {
		return nil
	}
	for i := range l.Containers {
		if l.Containers[i].Ref == ref {
			return &l.Containers[i]
		}
	}
	return nil
}

func (l *Lock) source(kind, name string) *LockedSource {
	if l == nil {
		return nil
	}
	for i := range l.Sources {
		if l.Sources[i].Kind == kind && l.Sources[i].Name == name {
			return &l.Sources[i]
		}
	}
	return nil
}

// writeAtomic writes b to a temporary file beside path and renames it into place.
func writeAtomic(path string, b []byte) error {
	dir, base := filepath.Dir(path), filepath.Base(path)
	tmp, err := os.CreateTemp(dir, "."+base+".*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil { //nolint:gosec // a lock file is committed and read by everyone
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return nil
}
