package airgap

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"github.com/distribution/distribution/v3"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/ulikunitz/xz"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Artifact types and layer media types of what is not a container image. Each artifact is an
// OCI 1.1 image manifest with the empty config and one layer: the file itself.
const (
	ArtifactTypeOS      = "application/vnd.cairn.os-image.v1"
	ArtifactTypeNetboot = "application/vnd.cairn.netboot.v1"
	ArtifactTypeFile    = "application/vnd.cairn.file.v1"

	MediaTypeOSPrefix      = "application/vnd.cairn.os-image." // + format: raw, raw+zstd, raw+gz, raw+xz, qcow2
	MediaTypeNetbootPrefix = "application/vnd.cairn.netboot."  // + kernel, initramfs, ipxe
	MediaTypeFile          = "application/octet-stream"
)

// Annotations on an OS image's layer, so a client that only sees the manifest knows what to expect.
const (
	AnnotationOSFormat             = "dev.cairn.os.format"
	AnnotationOSUncompressedDigest = "dev.cairn.os.uncompressed.digest"
	AnnotationOSUncompressedSize   = "dev.cairn.os.uncompressed.size"
)

// OSFormat is how an OS disk image is encoded.
type OSFormat string

// The OS image formats a store takes.
const (
	FormatRaw     OSFormat = "raw"
	FormatRawZstd OSFormat = "raw+zstd"
	FormatRawGzip OSFormat = "raw+gz"
	FormatRawXz   OSFormat = "raw+xz"
	FormatQcow2   OSFormat = "qcow2"
)

// NetbootType is what a netboot asset is.
type NetbootType string

// The netboot assets a store takes.
const (
	NetbootKernel    NetbootType = "kernel"
	NetbootInitramfs NetbootType = "initramfs"
	NetbootIPXE      NetbootType = "ipxe"
)

// OSImage is an OS disk image file to add as os/<Name>:<Tag>.
type OSImage struct {
	Name, Tag, Path string
	// Format must match the file's content; empty means detect it from the file's first bytes.
	Format OSFormat
}

// NetbootAsset is a kernel, initramfs or iPXE binary to add as netboot/<Name>:<Tag>.
type NetbootAsset struct {
	Name, Tag, Path string
	Type            NetbootType
}

// File is any other file to add as files/<Name>:<Tag>.
type File struct {
	Name, Tag, Path string
}

var magics = []struct {
	format OSFormat
	magic  []byte
}{
	{FormatRawZstd, []byte{0x28, 0xb5, 0x2f, 0xfd}},
	{FormatRawGzip, []byte{0x1f, 0x8b}},
	{FormatRawXz, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}},
	{FormatQcow2, []byte{'Q', 'F', 'I', 0xfb}},
}

// detectFormat names the format a file's first bytes announce; anything unrecognised is raw.
func detectFormat(head []byte) OSFormat {
	for _, m := range magics {
		if bytes.HasPrefix(head, m.magic) {
			return m.format
		}
	}
	return FormatRaw
}

// AddOSImage adds an OS disk image and records its format and uncompressed size and digest.
// The file is read once: it is written, hashed and, when compressed, decompressed and hashed
// in the same pass.
func (s *Store) AddOSImage(ctx context.Context, img OSImage) error {
	f, err := os.Open(img.Path)
	if err != nil {
		return fmt.Errorf("adding OS image %s: %w", img.Name, err)
	}
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	_ = f.Close() // read-only; nothing to lose
	found := detectFormat(head)
	format := img.Format
	switch format {
	case "":
		format = found
	case FormatRaw, FormatRawZstd, FormatRawGzip, FormatRawXz, FormatQcow2:
		if found != format {
			return fmt.Errorf("adding OS image %s: %s is %s by its content, not %s; fix the format or the file", img.Name, img.Path, found, format)
		}
	default:
		return fmt.Errorf("adding OS image %s: format %q: expected raw, raw+zstd, raw+gz, raw+xz or qcow2", img.Name, format)
	}
	info := &OSInfo{Format: format}
	if format == FormatQcow2 {
		// Bytes 24-31 of the header hold the virtual disk size; the data itself stays qcow2.
		if len(head) < 32 {
			return fmt.Errorf("adding OS image %s: %s: qcow2 header is truncated", img.Name, img.Path)
		}
		size := binary.BigEndian.Uint64(head[24:32])
		if size > math.MaxInt64 {
			return fmt.Errorf("adding OS image %s: %s: qcow2 header gives a virtual size of %d bytes, which is not a disk", img.Name, img.Path, size)
		}
		info.UncompressedSize = int64(size)
	}
	return s.addFileArtifact(ctx, KindOS, img.Name, img.Tag, img.Path, ArtifactTypeOS, MediaTypeOSPrefix+string(format), info)
}

// AddNetboot adds a kernel, initramfs or iPXE binary.
func (s *Store) AddNetboot(ctx context.Context, a NetbootAsset) error {
	switch a.Type {
	case NetbootKernel, NetbootInitramfs, NetbootIPXE:
	default:
		return fmt.Errorf("adding netboot asset %s: type %q: expected kernel, initramfs or ipxe", a.Name, a.Type)
	}
	return s.addFileArtifact(ctx, KindNetboot, a.Name, a.Tag, a.Path, ArtifactTypeNetboot, MediaTypeNetbootPrefix+string(a.Type), nil)
}

// AddFile adds a plain file.
func (s *Store) AddFile(ctx context.Context, f File) error {
	return s.addFileArtifact(ctx, KindFile, f.Name, f.Tag, f.Path, ArtifactTypeFile, MediaTypeFile, nil)
}

func (s *Store) addFileArtifact(ctx context.Context, kind Kind, name, tag, path, artifactType, layerType string, osInfo *OSInfo) (err error) {
	repoName, tag, err := artifactRepo(kind, name, tag)
	if err != nil {
		return fmt.Errorf("adding %w", err)
	}
	key := storeKey(repoName, tag, "")
	if err := s.begin(key); err != nil {
		return err
	}
	e := &entry{
		Artifact: Artifact{
			Name: name, Kind: kind, Repository: repoName, Tag: tag,
			MediaType: ocispec.MediaTypeImageManifest, ArtifactType: artifactType, OS: osInfo,
		},
		blobs: map[digest.Digest]int64{},
	}
	defer func() { err = s.finish(key, e, err) }()
	repo, err := s.repository(ctx, repoName)
	if err != nil {
		return fmt.Errorf("adding %s artifact %s: %w", kind, name, err)
	}
	empty := ocispec.DescriptorEmptyJSON
	if err := s.putBlob(ctx, repo, e, toV1(empty), func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(empty.Data)), nil
	}); err != nil {
		return fmt.Errorf("adding %s artifact %s: %w", kind, name, err)
	}
	d, size, err := s.writeFile(ctx, repo, e, path, layerType, osInfo)
	if err != nil {
		return fmt.Errorf("adding %s artifact %s: %s: %w", kind, name, path, err)
	}
	ann := map[string]string{ocispec.AnnotationTitle: filepath.Base(path)}
	if osInfo != nil {
		ann[AnnotationOSFormat] = string(osInfo.Format)
		ann[AnnotationOSUncompressedSize] = strconv.FormatInt(osInfo.UncompressedSize, 10)
		if osInfo.UncompressedDigest != "" {
			ann[AnnotationOSUncompressedDigest] = osInfo.UncompressedDigest.String()
		}
	}
	m := ocispec.Manifest{
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifactType,
		Config:       empty,
		Layers:       []ocispec.Descriptor{{MediaType: layerType, Digest: d, Size: size, Annotations: ann}},
	}
	m.SchemaVersion = 2
	raw, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("adding %s artifact %s: encoding manifest: %w", kind, name, err)
	}
	md := digest.FromBytes(raw)
	e.Digest = md
	if err := s.putManifest(ctx, repo, e, ocispec.MediaTypeImageManifest, raw); err != nil {
		return fmt.Errorf("adding %s artifact %s: %w", kind, name, err)
	}
	if err := repo.Tags(ctx).Tag(ctx, tag, v1Descriptor(md, int64(len(raw)), ocispec.MediaTypeImageManifest)); err != nil {
		return fmt.Errorf("adding %s artifact %s: tagging %s: %w", kind, name, md, err)
	}
	return nil
}

// writeFile streams a file into the store in one pass, hashing it as it goes and, for a
// compressed OS image, decompressing and hashing the payload beside it into osInfo.
func (s *Store) writeFile(ctx context.Context, repo distribution.Repository, e *entry, path, mediaType string, osInfo *OSInfo) (digest.Digest, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	w, err := repo.Blobs(ctx).Create(ctx)
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	dst := io.MultiWriter(w, h)
	var (
		pw   *io.PipeWriter
		done chan error
	)
	if osInfo != nil && osInfo.Format != FormatRaw && osInfo.Format != FormatQcow2 {
		var pr *io.PipeReader
		pr, pw = io.Pipe()
		done = make(chan error, 1)
		go func() {
			err := decompressInto(pr, osInfo)
			if err == nil {
				_, err = io.Copy(io.Discard, pr) // let the writer finish even past the last frame
			}
			_ = pr.CloseWithError(err) // always nil
			done <- err
		}()
		dst = io.MultiWriter(w, h, pw)
	}
	n, err := io.CopyBuffer(dst, f, make([]byte, 1<<20))
	if pw != nil {
		_ = pw.CloseWithError(err) // always nil
		if derr := <-done; derr != nil {
			err = fmt.Errorf("reading it as %s: %w", osInfo.Format, derr)
		}
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		_ = w.Cancel(ctx)
		return "", 0, err
	}
	d := digest.NewDigest(digest.SHA256, h)
	if osInfo != nil && osInfo.Format == FormatRaw {
		osInfo.UncompressedDigest, osInfo.UncompressedSize = d, n
	}
	if _, err := w.Commit(ctx, v1Descriptor(d, n, mediaType)); err != nil {
		return "", 0, fmt.Errorf("writing blob %s: %w", d, err)
	}
	name := repo.Named().Name()
	s.mu.Lock()
	e.blobs[d] = n
	if _, ok := s.blobs[d]; !ok {
		written := make(chan struct{})
		close(written)
		s.blobs[d] = &blobWrite{done: written, repo: name, size: n}
	}
	s.mu.Unlock()
	s.linked(name, d)
	return d, n, nil
}

// decompressInto reads a compressed OS image and records what the disk will hold.
func decompressInto(r io.Reader, info *OSInfo) error {
	switch info.Format {
	case FormatRawZstd:
		zr, err := zstd.NewReader(r)
		if err != nil {
			return err
		}
		defer zr.Close()
		r = zr
	case FormatRawGzip:
		gr, err := gzip.NewReader(r)
		if err != nil {
			return err
		}
		defer gr.Close()
		r = gr
	case FormatRawXz:
		xr, err := xz.NewReader(r)
		if err != nil {
			return err
		}
		r = xr
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, r, make([]byte, 1<<20))
	if err != nil {
		return err
	}
	info.UncompressedDigest = digest.NewDigest(digest.SHA256, h)
	info.UncompressedSize = n
	return nil
}

func v1Descriptor(d digest.Digest, size int64, mediaType string) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: size}
}

// toV1 converts an OCI descriptor to go-containerregistry's form.
func toV1(d ocispec.Descriptor) v1.Descriptor {
	h, _ := v1.NewHash(d.Digest.String()) // digests here come from digest.FromBytes or hashing
	return v1.Descriptor{MediaType: types.MediaType(d.MediaType), Digest: h, Size: d.Size}
}
