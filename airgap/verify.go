package airgap

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
)

// Problem is one thing wrong with a store.
type Problem struct {
	Artifact   string        // the artifacts concerned, as repository:tag, comma-separated; or a file name
	Repository string        // the repository, when one is concerned
	Digest     digest.Digest // the blob or manifest, when one is concerned
	Message    string        // what is wrong and what to do
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.Artifact)
	if p.Digest != "" {
		b.WriteString(" " + p.Digest.String())
	}
	b.WriteString(": " + p.Message)
	return b.String()
}

// VerifyError lists every problem Verify found.
type VerifyError struct {
	Dir      string
	Problems []Problem
}

func (e *VerifyError) Error() string {
	lines := make([]string, 0, len(e.Problems)+1)
	lines = append(lines, fmt.Sprintf("store %s failed verification with %d problem(s):", e.Dir, len(e.Problems)))
	for _, p := range e.Problems {
		lines = append(lines, "  "+p.String())
	}
	return strings.Join(lines, "\n")
}

// Report is what a verification read.
type Report struct {
	Index    *Index
	KeyID    string
	Blobs    int
	Bytes    int64 // blob bytes re-hashed
	Duration time.Duration
}

// Verify checks the store in dir against pub: bundle.sig must be pub's signature over
// bundle.json; every artifact's tag must point at its recorded digest; every manifest's config,
// layers and child manifests must be present and linked into its repository with the sizes the
// manifest states; every blob is re-hashed, in parallel, and must match its name; and nothing
// may be in the store that no artifact references. It reports every problem at once as a
// *VerifyError naming artifact, repository and digest.
func Verify(ctx context.Context, dir string, pub ed25519.PublicKey) (*Report, error) {
	start := time.Now()
	if len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("verifying store: no ed25519 public key given")
	}
	v := &verifier{dir: dir, users: map[digest.Digest]map[string]bool{}, sizes: map[digest.Digest]int64{}}
	rep := &Report{KeyID: KeyID(pub)}

	ixBytes, err := os.ReadFile(filepath.Join(dir, IndexFile))
	if err != nil {
		return nil, &VerifyError{Dir: dir, Problems: []Problem{{Artifact: IndexFile, Message: fmt.Sprintf("cannot read the bundle index (%v); the store is unfinished or this is not a store", err)}}}
	}
	sig, err := os.ReadFile(filepath.Join(dir, SignatureFile))
	switch {
	case err != nil:
		v.add(Problem{Artifact: SignatureFile, Message: fmt.Sprintf("cannot read the signature (%v); the store was never sealed or the file was removed", err)})
	case !ed25519.Verify(pub, ixBytes, sig):
		v.add(Problem{Artifact: IndexFile, Message: fmt.Sprintf("signature in %s does not match key %s: %s was changed after signing, or it was signed with another key", SignatureFile, rep.KeyID, IndexFile)})
	}
	ix, err := parseIndex(ixBytes)
	if err != nil {
		v.add(Problem{Artifact: IndexFile, Message: err.Error()})
		return nil, v.result()
	}
	rep.Index = ix
	if canon, err := canonicalJSON(ixBytes); err != nil || !bytes.Equal(canon, ixBytes) {
		v.add(Problem{Artifact: IndexFile, Message: "not in canonical form (sorted keys, no spaces); it was edited by hand"})
	}

	for _, a := range ix.Artifacts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		v.checkArtifact(a)
	}
	v.checkTotals(ix)

	n, bytesRead, err := v.hashAll(ctx)
	if err != nil {
		return nil, err
	}
	rep.Blobs, rep.Bytes = n, bytesRead
	rep.Duration = time.Since(start)
	if err := v.result(); err != nil {
		return rep, err
	}
	return rep, nil
}

type verifier struct {
	dir string

	mu       sync.Mutex
	problems []Problem
	users    map[digest.Digest]map[string]bool // blob → the artifacts (repository:tag) that use it
	sizes    map[digest.Digest]int64
}

func (v *verifier) add(p Problem) {
	v.mu.Lock()
	v.problems = append(v.problems, p)
	v.mu.Unlock()
}

func (v *verifier) result() error {
	if len(v.problems) == 0 {
		return nil
	}
	sort.Slice(v.problems, func(i, j int) bool {
		a, b := v.problems[i], v.problems[j]
		if a.Artifact != b.Artifact {
			return a.Artifact < b.Artifact
		}
		if a.Digest != b.Digest {
			return a.Digest < b.Digest
		}
		return a.Message < b.Message
	})
	return &VerifyError{Dir: v.dir, Problems: v.problems}
}

func (v *verifier) v2(parts ...string) string {
	return filepath.Join(append([]string{v.dir, layout}, parts...)...)
}

func blobData(d digest.Digest) []string {
	return []string{"blobs", d.Algorithm().String(), d.Encoded()[:2], d.Encoded(), "data"}
}

// link reads a link file and returns the digest it names.
func readLink(path string) (digest.Digest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	d := digest.Digest(strings.TrimSpace(string(b)))
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("link %s holds %q: %w", path, b, err)
	}
	return d, nil
}

// walk state for one artifact
type artifactWalk struct {
	a         Artifact
	name      string
	repo      string
	blobs     map[digest.Digest]int64
	platforms []string
	mediaType string // of the top manifest, as it says itself
	artType   string
}

func (w *artifactWalk) problem(d digest.Digest, format string, args ...any) Problem {
	return Problem{Artifact: w.name, Repository: w.repo, Digest: d, Message: fmt.Sprintf(format, args...)}
}

func (v *verifier) checkArtifact(a Artifact) {
	w := &artifactWalk{a: a, name: a.Ref(), repo: a.Repository, blobs: map[digest.Digest]int64{}}
	repoDir := []string{"repositories", filepath.FromSlash(a.Repository)}
	if a.Tag != "" {
		p := v.v2(append(repoDir, "_manifests", "tags", a.Tag, "current", "link")...)
		got, err := readLink(p)
		switch {
		case err != nil:
			v.add(w.problem(a.Digest, "tag %q is missing from repository %s (%v); the store was altered after sealing", a.Tag, a.Repository, err))
		case got != a.Digest:
			v.add(w.problem(a.Digest, "tag %q in repository %s points at %s, bundle.json says %s", a.Tag, a.Repository, got, a.Digest))
		}
	}
	_ = v.walkManifest(w, repoDir, a.Digest, -1, 0)
	var size int64
	for _, n := range w.blobs {
		size += n
	}
	if size != a.Size {
		v.add(w.problem(a.Digest, "references %d bytes of blobs, bundle.json says %d", size, a.Size))
	}
	sort.Strings(w.platforms)
	if got, want := strings.Join(w.platforms, ","), strings.Join(a.Platforms, ","); got != want {
		v.add(w.problem(a.Digest, "manifests give platforms [%s], bundle.json says [%s]", got, want))
	}
	if w.mediaType != "" && w.mediaType != a.MediaType {
		v.add(w.problem(a.Digest, "manifest has media type %q, bundle.json says %q", w.mediaType, a.MediaType))
	}
	if w.artType != a.ArtifactType {
		v.add(w.problem(a.Digest, "manifest has artifact type %q, bundle.json says %q", w.artType, a.ArtifactType))
	}
	if msg := checkName(a); msg != "" {
		v.add(w.problem(a.Digest, "%s", msg))
	}
}

// checkName says what is wrong when an artifact's name, kind, repository and tag disagree.
func checkName(a Artifact) string {
	if a.Kind == KindImage {
		repo, tag, _, err := parseImageName(a.Name)
		if err != nil || repo != a.Repository || (tag != a.Tag && a.Tag != "") {
			return fmt.Sprintf("image name %q does not give repository %s and tag %q", a.Name, a.Repository, a.Tag)
		}
		return ""
	}
	prefix, ok := map[Kind]string{KindOS: "os/", KindNetboot: "netboot/", KindFile: "files/"}[a.Kind]
	if !ok {
		return fmt.Sprintf("kind %q is not one of image, os, netboot, file", a.Kind)
	}
	if a.Repository != prefix+a.Name {
		return fmt.Sprintf("a %s artifact named %q belongs in repository %s%s, not %s", a.Kind, a.Name, prefix, a.Name, a.Repository)
	}
	return ""
}

type manifestDoc struct {
	MediaType    string          `json:"mediaType"`
	ArtifactType string          `json:"artifactType"`
	Config       *descriptorDoc  `json:"config"`
	Layers       []descriptorDoc `json:"layers"`
	Manifests    []descriptorDoc `json:"manifests"`
}

type descriptorDoc struct {
	MediaType   string            `json:"mediaType"`
	Digest      digest.Digest     `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations"`
	Platform    *v1.Platform      `json:"platform"`
}

// walkManifest checks a manifest and everything below it, and returns the platform an image
// manifest's config names.
func (v *verifier) walkManifest(w *artifactWalk, repoDir []string, d digest.Digest, size int64, depth int) string {
	if depth > 8 {
		v.add(w.problem(d, "indexes nest deeper than 8 levels"))
		return ""
	}
	link := v.v2(append(repoDir, "_manifests", "revisions", d.Algorithm().String(), d.Encoded(), "link")...)
	if got, err := readLink(link); err != nil || got != d {
		v.add(w.problem(d, "manifest is not linked into repository %s; a registry would answer 404 for it", w.repo))
	}
	b, err := readSmall(v.v2(blobData(d)...))
	if errors.Is(err, errTooBig) {
		v.add(w.problem(d, "manifest blob is over %d bytes, larger than any registry accepts; the store was altered", maxManifest))
		return ""
	}
	if err != nil {
		v.add(w.problem(d, "manifest blob is missing from the store (%v); rebuild the store or copy it again from the source", errors.Unwrap(err)))
		if size >= 0 {
			v.use(w, d, size)
		}
		return ""
	}
	if got := digest.FromBytes(b); got != d {
		// The blob re-hash reports this too; the content cannot be trusted, so stop here.
		return ""
	}
	if size >= 0 && int64(len(b)) != size {
		v.add(w.problem(d, "manifest is %d bytes, its parent says %d", len(b), size))
	}
	v.use(w, d, int64(len(b)))
	var m manifestDoc
	if err := json.Unmarshal(b, &m); err != nil {
		v.add(w.problem(d, "manifest does not parse: %v", err))
		return ""
	}
	if depth == 0 {
		w.mediaType, w.artType = m.MediaType, m.ArtifactType
	}
	for _, c := range m.Manifests {
		if err := c.Digest.Validate(); err != nil {
			v.add(w.problem(d, "index lists an invalid digest %q", c.Digest))
			continue
		}
		p := v.walkManifest(w, repoDir, c.Digest, c.Size, depth+1)
		if c.Platform != nil {
			p = c.Platform.String()
		}
		if keepPlatform(p) && !strings.Contains(c.MediaType, "index") && !strings.Contains(c.MediaType, "list") {
			w.platforms = append(w.platforms, p)
		}
	}
	var platform string
	if m.Config != nil {
		v.checkBlob(w, repoDir, *m.Config)
		platform = v.configPlatform(m.Config.Digest)
		if depth == 0 && keepPlatform(platform) {
			w.platforms = append(w.platforms, platform)
		}
	}
	for _, l := range m.Layers {
		v.checkBlob(w, repoDir, l)
	}
	if depth == 0 && w.a.OS != nil {
		v.checkOS(w, d, m)
	}
	return platform
}

// maxManifest bounds what Verify reads into memory as a manifest or config: distribution
// refuses manifests over 4 MiB.
const maxManifest = 4 << 20

var errTooBig = errors.New("file too big")

func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxManifest+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxManifest {
		return nil, errTooBig
	}
	return b, nil
}

// configPlatform reads the platform an image config names, if the config is intact.
func (v *verifier) configPlatform(d digest.Digest) string {
	if d.Validate() != nil {
		return ""
	}
	b, err := readSmall(v.v2(blobData(d)...))
	if err != nil || digest.FromBytes(b) != d {
		return ""
	}
	var cf struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Variant      string `json:"variant"`
	}
	if json.Unmarshal(b, &cf) != nil {
		return ""
	}
	return (&v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}).String()
}

// checkOS compares an OS image's record in bundle.json with what its manifest says, which is
// what an agent reads before it writes a disk.
func (v *verifier) checkOS(w *artifactWalk, d digest.Digest, m manifestDoc) {
	if len(m.Layers) != 1 {
		v.add(w.problem(d, "OS image manifest has %d layers, want 1", len(m.Layers)))
		return
	}
	l, info := m.Layers[0], w.a.OS
	want := map[string]string{
		AnnotationOSFormat:           string(info.Format),
		AnnotationOSUncompressedSize: strconv.FormatInt(info.UncompressedSize, 10),
	}
	if info.UncompressedDigest != "" {
		want[AnnotationOSUncompressedDigest] = info.UncompressedDigest.String()
	}
	if l.MediaType != MediaTypeOSPrefix+string(info.Format) {
		v.add(w.problem(l.Digest, "OS image layer has media type %q, bundle.json says format %s", l.MediaType, info.Format))
	}
	for k, val := range want {
		if l.Annotations[k] != val {
			v.add(w.problem(l.Digest, "OS image layer annotation %s is %q, bundle.json says %q", k, l.Annotations[k], val))
		}
	}
}

func (v *verifier) checkBlob(w *artifactWalk, repoDir []string, desc descriptorDoc) {
	d := desc.Digest
	if err := d.Validate(); err != nil {
		v.add(w.problem("", "manifest lists an invalid digest %q", d))
		return
	}
	link := v.v2(append(repoDir, "_layers", d.Algorithm().String(), d.Encoded(), "link")...)
	if got, err := readLink(link); err != nil || got != d {
		v.add(w.problem(d, "blob (%s) is not linked into repository %s; a registry would answer 404 for it", desc.MediaType, w.repo))
	}
	fi, err := os.Stat(v.v2(blobData(d)...))
	if err != nil {
		v.add(w.problem(d, "blob (%s, %d bytes) is missing from the store; rebuild the store or copy it again from the source", desc.MediaType, desc.Size))
		v.use(w, d, desc.Size) // counted as listed, so that the totals do not repeat the problem
		return
	}
	if fi.Size() != desc.Size {
		v.add(w.problem(d, "blob is %d bytes, the manifest says %d", fi.Size(), desc.Size))
	}
	v.use(w, d, desc.Size)
}

func (v *verifier) use(w *artifactWalk, d digest.Digest, size int64) {
	w.blobs[d] = size
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.users[d] == nil {
		v.users[d] = map[string]bool{}
	}
	v.users[d][w.name] = true
	v.sizes[d] = size
}

func (v *verifier) usersOf(d digest.Digest) string {
	names := make([]string, 0, len(v.users[d]))
	for n := range v.users[d] {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func (v *verifier) checkTotals(ix *Index) {
	var t Totals
	t.Artifacts = len(ix.Artifacts)
	for _, a := range ix.Artifacts {
		t.Bytes += a.Size
	}
	t.Blobs = len(v.sizes)
	for _, n := range v.sizes {
		t.StoredBytes += n
	}
	if t != ix.Totals {
		v.add(Problem{Artifact: IndexFile, Message: fmt.Sprintf("totals say %+v, the artifacts add up to %+v", ix.Totals, t)})
	}
}

// hashAll re-hashes every blob file in the store, in parallel.
func (v *verifier) hashAll(ctx context.Context) (int, int64, error) {
	root := v.v2("blobs")
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, 0, fmt.Errorf("listing blobs: %w", err)
	}
	seen := map[digest.Digest]bool{}
	var (
		mu    sync.Mutex
		total int64
	)
	g, gctx := errgroup.WithContext(ctx)
	// Two readers per CPU: one hashes while the other waits on the disk.
	g.SetLimit(2 * runtime.GOMAXPROCS(0))
	for _, p := range files {
		rel, _ := filepath.Rel(root, p)
		parts := strings.Split(filepath.ToSlash(rel), "/")
		var d digest.Digest
		if len(parts) == 4 && parts[3] == "data" {
			d = digest.NewDigestFromEncoded(digest.Algorithm(parts[0]), parts[2])
		}
		if d.Validate() != nil || parts[1] != d.Encoded()[:2] {
			v.add(Problem{Artifact: filepath.ToSlash(filepath.Join(layout, "blobs", rel)), Message: "unexpected file among the blobs; the store was altered after sealing"})
			continue
		}
		seen[d] = true
		if v.users[d] == nil {
			v.add(Problem{Artifact: "(no artifact)", Digest: d, Message: "blob is in the store but no artifact in bundle.json references it; the store was altered after sealing"})
		}
		g.Go(func() error {
			got, n, err := hashBlob(gctx, p)
			if err != nil {
				if gctx.Err() != nil {
					return gctx.Err()
				}
				v.add(Problem{Artifact: v.usersOf(d), Digest: d, Message: fmt.Sprintf("cannot read blob: %v", err)})
				return nil
			}
			mu.Lock()
			total += n
			mu.Unlock()
			if got != d {
				v.add(Problem{Artifact: v.usersOf(d), Digest: d, Message: fmt.Sprintf("blob content hashes to %s; the medium is damaged or the blob was altered", got)})
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, 0, err
	}
	return len(seen), total, nil
}

func hashBlob(ctx context.Context, path string) (digest.Digest, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return "", n, err
		}
		k, err := f.Read(buf)
		h.Write(buf[:k])
		n += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", n, err
		}
	}
	return digest.NewDigest(digest.SHA256, h), n, nil
}
