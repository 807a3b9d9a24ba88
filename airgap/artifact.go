package airgap

import (
	"bufio"
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
	info, err := uncompressed(img.Path, format, head)
	if err != nil {
		return fmt.Errorf("adding OS image %s: reading %s as %s: %w", img.Name, img.Path, format, err)
	}
	ann := map[string]string{
		AnnotationOSFormat:           string(format),
		AnnotationOSUncompressedSize: strconv.FormatInt(info.UncompressedSize, 10),
	}
	if info.UncompressedDigest != "" {
		ann[AnnotationOSUncompressedDigest] = info.UncompressedDigest.String()
	}
	return s.addFileArtifact(ctx, KindOS, img.Name, img.Tag, img.Path, ArtifactTypeOS, MediaTypeOSPrefix+string(format), ann, info)
}

// AddNetboot adds a kernel, initramfs or iPXE binary.
func (s *Store) AddNetboot(ctx context.Context, a NetbootAsset) error {
	switch a.Type {
	case NetbootKernel, NetbootInitramfs, NetbootIPXE:
	default:
		return fmt.Errorf("adding netboot asset %s: type %q: expected kernel, initramfs or ipxe", a.Name, a.Type)
	}
	return s.addFileArtifact(ctx, KindNetboot, a.Name, a.Tag, a.Path, ArtifactTypeNetboot, MediaTypeNetbootPrefix+string(a.Type), nil, nil)
}

// AddFile adds a plain file.
func (s *Store) AddFile(ctx context.Context, f File) error {
	return s.addFileArtifact(ctx, KindFile, f.Name, f.Tag, f.Path, ArtifactTypeFile, MediaTypeFile, nil, nil)
}

func (s *Store) addFileArtifact(ctx context.Context, kind Kind, name, tag, path, artifactType, layerType string, ann map[string]string, osInfo *OSInfo) (err error) {
	repoName, tag, err := artifactRepo(kind, name, tag)
	if err != nil {
		return fmt.Errorf("adding %w", err)
	}
	var (
		d    digest.Digest
		size int64
	)
	if osInfo != nil && osInfo.Format == FormatRaw {
		// Already hashed for the uncompressed digest; distribution re-checks it while writing.
		d, size = osInfo.UncompressedDigest, osInfo.UncompressedSize
	} else if d, size, err = hashFile(path); err != nil {
		return fmt.Errorf("adding %s artifact %s: %w", kind, name, err)
	}
	if ann == nil {
		ann = map[string]string{}
	}
	ann[ocispec.AnnotationTitle] = filepath.Base(path)
	layer := ocispec.Descriptor{MediaType: layerType, Digest: d, Size: size, Annotations: ann}
	m := ocispec.Manifest{
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifactType,
		Config:       ocispec.DescriptorEmptyJSON,
		Layers:       []ocispec.Descriptor{layer},
	}
	m.SchemaVersion = 2
	raw, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("adding %s artifact %s: encoding manifest: %w", kind, name, err)
	}
	md := digest.FromBytes(raw)
	key := storeKey(repoName, tag, md)
	if err := s.begin(key); err != nil {
		return err
	}
	e := &entry{
		Artifact: Artifact{
			Name: name, Kind: kind, Repository: repoName, Tag: tag, Digest: md,
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
	if err := s.putBlob(ctx, repo, e, toV1(layer), func() (io.ReadCloser, error) {
		return os.Open(path)
	}); err != nil {
		return fmt.Errorf("adding %s artifact %s: %s: %w", kind, name, path, err)
	}
	if err := s.putManifest(ctx, repo, e, ocispec.MediaTypeImageManifest, raw); err != nil {
		return fmt.Errorf("adding %s artifact %s: %w", kind, name, err)
	}
	if err := repo.Tags(ctx).Tag(ctx, tag, v1Descriptor(md, int64(len(raw)), ocispec.MediaTypeImageManifest)); err != nil {
		return fmt.Errorf("adding %s artifact %s: tagging %s: %w", kind, name, md, err)
	}
	return nil
}

// uncompressed reads an OS image through its decompressor and returns what the disk will hold.
func uncompressed(path string, format OSFormat, head []byte) (*OSInfo, error) {
	info := &OSInfo{Format: format}
	if format == FormatQcow2 {
		// Bytes 24-31 of the header hold the virtual disk size; the data itself stays qcow2.
		if len(head) < 32 {
			return nil, fmt.Errorf("qcow2 header is truncated")
		}
		size := binary.BigEndian.Uint64(head[24:32])
		if size > math.MaxInt64 {
			return nil, fmt.Errorf("qcow2 header gives a virtual size of %d bytes, which is not a disk", size)
		}
		info.UncompressedSize = int64(size)
		return info, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = bufio.NewReaderSize(f, 1<<20)
	switch format {
	case FormatRawZstd:
		zr, err := zstd.NewReader(r)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		r = zr
	case FormatRawGzip:
		gr, err := gzip.NewReader(r)
		if err != nil {
			return nil, err
		}
		defer gr.Close()
		r = gr
	case FormatRawXz:
		xr, err := xz.NewReader(r)
		if err != nil {
			return nil, err
		}
		r = xr
	}
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return nil, err
	}
	info.UncompressedDigest = digest.NewDigest(digest.SHA256, h)
	info.UncompressedSize = n
	return info, nil
}

func v1Descriptor(d digest.Digest, size int64, mediaType string) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: size}
}

// toV1 converts an OCI descriptor to go-containerregistry's form.
func toV1(d ocispec.Descriptor) v1.Descriptor {
	h, _ := v1.NewHash(d.Digest.String()) // digests here come from digest.FromBytes or hashing
	return v1.Descriptor{MediaType: types.MediaType(d.MediaType), Digest: h, Size: d.Size}
}
