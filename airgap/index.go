package airgap

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// IndexVersion is the format version of bundle.json that this package writes and reads.
const IndexVersion = 1

// File names at the root of a store.
const (
	IndexFile     = "bundle.json"
	SignatureFile = "bundle.sig"
)

// Kind says what an artifact is for.
type Kind string

// The kinds of artifact a store holds. Each non-image kind lives under its own repository prefix.
const (
	KindImage   Kind = "image"   // a container image or multi-platform index, under its upstream name
	KindOS      Kind = "os"      // an OS disk image, under os/<name>
	KindNetboot Kind = "netboot" // a kernel, initramfs or iPXE binary, under netboot/<name>
	KindFile    Kind = "file"    // any other file, under files/<name>
)

// Index is the content of bundle.json: what a store holds, signed as a whole.
type Index struct {
	Version   int        `json:"version"`
	Created   string     `json:"created"` // RFC 3339, UTC, from SOURCE_DATE_EPOCH
	Artifacts []Artifact `json:"artifacts"`
	Totals    Totals     `json:"totals"`
}

// Artifact is one named, tagged entry of a store.
type Artifact struct {
	Name         string        `json:"name"` // as the operator wrote it: docker.io/library/nginx:1.27, debian-12
	Kind         Kind          `json:"kind"`
	Repository   string        `json:"repository"`
	Tag          string        `json:"tag,omitempty"`
	Digest       digest.Digest `json:"digest"` // of the top manifest or index
	MediaType    string        `json:"mediaType"`
	ArtifactType string        `json:"artifactType,omitempty"`
	Size         int64         `json:"size"` // every blob the artifact references, manifests included, each counted once
	Platforms    []string      `json:"platforms,omitempty"`
	OS           *OSInfo       `json:"os,omitempty"`
}

// OSInfo describes an OS disk image's payload.
type OSInfo struct {
	Format             OSFormat      `json:"format"`
	UncompressedDigest digest.Digest `json:"uncompressedDigest,omitempty"` // empty for qcow2
	UncompressedSize   int64         `json:"uncompressedSize"`             // for qcow2, the virtual disk size
}

// Totals sum up a store: Bytes counts every artifact's blobs as if stored alone, StoredBytes
// counts each distinct blob once, so Bytes-StoredBytes is what de-duplication saved.
type Totals struct {
	Artifacts   int   `json:"artifacts"`
	Blobs       int   `json:"blobs"`
	Bytes       int64 `json:"bytes"`
	StoredBytes int64 `json:"storedBytes"`
}

// Ref is the artifact's repository with its tag, or with its digest when it has no tag.
func (a Artifact) Ref() string {
	if a.Tag != "" {
		return a.Repository + ":" + a.Tag
	}
	return a.Repository + "@" + a.Digest.String()
}

func sortArtifacts(as []Artifact) {
	sort.Slice(as, func(i, j int) bool {
		a, b := as[i], as[j]
		if a.Repository != b.Repository {
			return a.Repository < b.Repository
		}
		if a.Tag != b.Tag {
			return a.Tag < b.Tag
		}
		return a.Digest < b.Digest
	})
}

// formatCreated renders t the way bundle.json records it.
func formatCreated(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// Marshal returns the canonical JSON encoding of the index: object keys sorted, no
// insignificant space, no HTML escaping, no trailing newline. The signature covers these bytes.
func (ix *Index) Marshal() ([]byte, error) {
	raw, err := json.Marshal(ix)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", IndexFile, err)
	}
	return canonicalJSON(raw)
}

// ReadIndex reads and parses DIR/bundle.json without checking its signature; use Verify for that.
func ReadIndex(dir string) (*Index, []byte, error) {
	p := filepath.Join(dir, IndexFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, nil, fmt.Errorf("reading bundle index: %w (is %s a store written by cairn build?)", err, dir)
	}
	ix, err := parseIndex(b)
	if err != nil {
		return nil, b, fmt.Errorf("%s: %w", p, err)
	}
	return ix, b, nil
}

func parseIndex(b []byte) (*Index, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var ix Index
	if err := dec.Decode(&ix); err != nil {
		return nil, fmt.Errorf("parsing bundle index: %w", err)
	}
	if ix.Version != IndexVersion {
		return nil, fmt.Errorf("bundle index version %d: this cairn reads version %d; use the cairn that wrote the store", ix.Version, IndexVersion)
	}
	for i, a := range ix.Artifacts {
		if err := a.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("artifact %d (%s): digest %q: %w", i, a.Name, a.Digest, err)
		}
		named, err := reference.WithName(a.Repository)
		if err != nil {
			return nil, fmt.Errorf("artifact %d (%s): repository %q: %w", i, a.Name, a.Repository, err)
		}
		if a.Tag != "" {
			if _, err := reference.WithTag(named, a.Tag); err != nil {
				return nil, fmt.Errorf("artifact %d (%s): tag %q: %w", i, a.Name, a.Tag, err)
			}
		}
	}
	return &ix, nil
}

// canonicalJSON re-encodes a JSON document with sorted keys and no insignificant space.
// Numbers are kept as written (the index holds only integers).
func canonicalJSON(doc []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("canonicalizing JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("canonicalizing JSON: trailing data after the document")
	}
	var buf bytes.Buffer
	if err := writeCanonical(&buf, v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeCanonical(buf *bytes.Buffer, v any) error {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeString(buf, k)
			buf.WriteByte(':')
			if err := writeCanonical(buf, v[k]); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	case []any:
		buf.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeCanonical(buf, e); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case string:
		writeString(buf, v)
	case json.Number:
		if strings.ContainsAny(string(v), ".eE") {
			return fmt.Errorf("canonicalizing JSON: number %s is not an integer", v)
		}
		buf.WriteString(string(v))
	case bool:
		if v {
			buf.WriteString("true")
		} else {
			buf.WriteString("false")
		}
	case nil:
		buf.WriteString("null")
	default:
		return fmt.Errorf("canonicalizing JSON: unexpected %T", v)
	}
	return nil
}

func writeString(buf *bytes.Buffer, s string) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	buf.Write(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}
