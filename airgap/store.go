package airgap

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/distribution/reference"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
)

// StoreConfig says where a new store goes and how it is stamped.
type StoreConfig struct {
	// Dir is the store's root. It must not exist yet or be empty.
	Dir string
	// Created is recorded in bundle.json; pass the time from SOURCE_DATE_EPOCH (see SourceDateEpoch)
	// for a reproducible store. Zero means now.
	Created time.Time
	// Concurrency bounds parallel blob writes within one image. Zero means 4.
	Concurrency int
	// LinkFrom, when set, names a file already holding a blob's bytes (a build's verified
	// download cache). The store hard-links it in place of copying the bytes, when both are on
	// one filesystem; otherwise, or when LinkFrom has no file, it copies as usual. The file's
	// content must match the digest: it is the caller's verified copy.
	LinkFrom func(digest.Digest) (path string, ok bool)
}

// Store writes a content store: distribution v3's storage layout under Dir/docker/registry/v2,
// written through distribution's own storage code, plus bundle.json and bundle.sig at Dir once
// sealed. Add methods may be called concurrently; Seal must come last.
type Store struct {
	dir     string
	created time.Time
	limit   int
	ns      distribution.Namespace
	link    func(digest.Digest) (string, bool)

	mu        sync.Mutex
	sealed    bool
	artifacts map[string]*entry                 // by repository:tag or repository@digest
	blobs     map[digest.Digest]*blobWrite      // every blob written or being written
	repoBlobs map[string]map[digest.Digest]bool // blobs already linked into each repository
}

// entry is an artifact with every blob it references.
type entry struct {
	Artifact
	blobs map[digest.Digest]int64
}

// blobWrite lets concurrent adds of one blob wait for a single write.
type blobWrite struct {
	done chan struct{}
	err  error
	repo string // a repository the blob is linked into, to mount from
	size int64
}

// Create starts a new, empty store in cfg.Dir.
func Create(ctx context.Context, cfg StoreConfig) (*Store, error) {
	if cfg.Dir == "" {
		return nil, errors.New("creating store: no directory given")
	}
	if ents, err := os.ReadDir(cfg.Dir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("creating store in %s: the directory is not empty; give a new or empty directory", cfg.Dir)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("creating store: %w", err)
	}
	//nolint:gosec // G301: the store is mastered onto a medium that every user of the appliance reads
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating store: %w", err)
	}
	created := cfg.Created
	if created.IsZero() {
		created = time.Now()
	}
	limit := cfg.Concurrency
	if limit <= 0 {
		limit = 4
	}
	drv := writeDriver{StorageDriver: filesystem.New(filesystem.DriverParameters{RootDirectory: cfg.Dir, MaxThreads: 100}), root: cfg.Dir}
	ns, err := storage.NewRegistry(ctx, drv, storage.EnableValidateImageIndexImagesExist)
	if err != nil {
		return nil, fmt.Errorf("creating store in %s: %w", cfg.Dir, err)
	}
	return &Store{
		dir:       cfg.Dir,
		created:   created.UTC().Truncate(time.Second),
		limit:     limit,
		ns:        ns,
		link:      cfg.LinkFrom,
		artifacts: map[string]*entry{},
		blobs:     map[digest.Digest]*blobWrite{},
		repoBlobs: map[string]map[digest.Digest]bool{},
	}, nil
}

// SourceDateEpoch returns the time in $SOURCE_DATE_EPOCH, or the zero time when it is unset.
func SourceDateEpoch() (time.Time, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return time.Time{}, nil
	}
	var secs int64
	if _, err := fmt.Sscanf(v, "%d", &secs); err != nil || fmt.Sprint(secs) != v {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: expected whole seconds since 1970-01-01 UTC", v)
	}
	return time.Unix(secs, 0).UTC(), nil
}

// parseImageName turns an upstream image reference into the repository and tag the store keeps
// it under: nginx:1.27 becomes docker.io/library/nginx and 1.27. A digest in the name must match.
func parseImageName(name string) (repo, tag string, dgst digest.Digest, err error) {
	ref, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return "", "", "", fmt.Errorf("image name %q: %w", name, err)
	}
	if c, ok := ref.(reference.Canonical); ok {
		dgst = c.Digest()
	}
	if t, ok := ref.(reference.Tagged); ok {
		tag = t.Tag()
	} else if dgst == "" {
		tag = "latest"
	}
	return ref.Name(), tag, dgst, nil
}

// artifactRepo checks a short artifact name and tag and returns the repository for kind.
func artifactRepo(kind Kind, name, tag string) (repo, outTag string, err error) {
	prefix := map[Kind]string{KindOS: "os/", KindNetboot: "netboot/", KindFile: "files/"}[kind]
	repo = prefix + name
	named, err := reference.WithName(repo)
	if err != nil || strings.Contains(name, ":") {
		return "", "", fmt.Errorf("%s artifact name %q: expected lowercase letters, digits, '.', '_', '-' and '/' separators", kind, name)
	}
	if tag == "" {
		tag = "latest"
	}
	if _, err := reference.WithTag(named, tag); err != nil {
		return "", "", fmt.Errorf("%s artifact %q: tag %q: %w", kind, name, tag, err)
	}
	return repo, tag, nil
}

func (s *Store) repository(ctx context.Context, repo string) (distribution.Repository, error) {
	named, err := reference.WithName(repo)
	if err != nil {
		return nil, fmt.Errorf("repository %q: %w", repo, err)
	}
	return s.ns.Repository(ctx, named)
}

// begin reserves an artifact slot so that two adds of the same name fail loudly.
func (s *Store) begin(key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sealed {
		return fmt.Errorf("adding %s: the store is already sealed", key)
	}
	if _, ok := s.artifacts[key]; ok {
		return fmt.Errorf("adding %s: the store already holds an artifact with that name; give each one once", key)
	}
	s.artifacts[key] = nil
	return nil
}

func (s *Store) finish(key string, e *entry, err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		delete(s.artifacts, key)
		return err
	}
	var size int64
	for _, n := range e.blobs {
		size += n
	}
	e.Size = size
	s.artifacts[key] = e
	return nil
}

func storeKey(repo, tag string, dgst digest.Digest) string {
	if tag != "" {
		return repo + ":" + tag
	}
	return repo + "@" + dgst.String()
}

// AddImage adds a single-platform container image, OCI or Docker schema 2, under its upstream
// name (docker.io/library/nginx:1.27, or nginx:1.27, which means the same).
func (s *Store) AddImage(ctx context.Context, name string, img v1.Image) error {
	return s.addContainer(ctx, name, img, nil)
}

// AddIndex adds a multi-platform image (OCI index or Docker manifest list) with every image it lists.
func (s *Store) AddIndex(ctx context.Context, name string, idx v1.ImageIndex) error {
	return s.addContainer(ctx, name, nil, idx)
}

func (s *Store) addContainer(ctx context.Context, name string, img v1.Image, idx v1.ImageIndex) (err error) {
	repoName, tag, want, err := parseImageName(name)
	if err != nil {
		return fmt.Errorf("adding image: %w", err)
	}
	var (
		dgst v1.Hash
		mt   types.MediaType
	)
	if img != nil {
		dgst, err = img.Digest()
		if err == nil {
			mt, err = img.MediaType()
		}
	} else {
		dgst, err = idx.Digest()
		if err == nil {
			mt, err = idx.MediaType()
		}
	}
	if err != nil {
		return fmt.Errorf("adding image %s: reading its manifest: %w", name, err)
	}
	d := digest.Digest(dgst.String())
	if want != "" && want != d {
		return fmt.Errorf("adding image %s: its manifest has digest %s, not the %s its name pins; pull it again", name, d, want)
	}
	key := storeKey(repoName, tag, d)
	if err := s.begin(key); err != nil {
		return err
	}
	e := &entry{
		Artifact: Artifact{Name: name, Kind: KindImage, Repository: repoName, Tag: tag, Digest: d, MediaType: string(mt)},
		blobs:    map[digest.Digest]int64{},
	}
	defer func() { err = s.finish(key, e, err) }()
	repo, err := s.repository(ctx, repoName)
	if err != nil {
		return fmt.Errorf("adding image %s: %w", name, err)
	}
	var platforms []string
	if img != nil {
		var p string
		p, err = s.putImage(ctx, repo, e, img)
		if keepPlatform(p) {
			platforms = append(platforms, p)
		}
	} else {
		platforms, err = s.putIndex(ctx, repo, e, idx)
	}
	if err != nil {
		return fmt.Errorf("adding image %s: %w", name, err)
	}
	sort.Strings(platforms)
	e.Platforms = platforms
	if tag != "" {
		if err := repo.Tags(ctx).Tag(ctx, tag, v1Descriptor(d, 0, string(mt))); err != nil {
			return fmt.Errorf("adding image %s: tagging %s: %w", name, d, err)
		}
	}
	return nil
}

// putIndex writes every child of idx, then idx itself, and returns the platforms it lists.
func (s *Store) putIndex(ctx context.Context, repo distribution.Repository, e *entry, idx v1.ImageIndex) ([]string, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("reading index: %w", err)
	}
	var platforms []string
	for _, desc := range im.Manifests {
		switch {
		case desc.MediaType.IsIndex():
			child, err := idx.ImageIndex(desc.Digest)
			if err != nil {
				return nil, fmt.Errorf("reading index %s: %w", desc.Digest, err)
			}
			ps, err := s.putIndex(ctx, repo, e, child)
			if err != nil {
				return nil, err
			}
			platforms = append(platforms, ps...)
		case desc.MediaType.IsImage():
			child, err := idx.Image(desc.Digest)
			if err != nil {
				return nil, fmt.Errorf("reading image %s: %w", desc.Digest, err)
			}
			p, err := s.putImage(ctx, repo, e, child)
			if err != nil {
				return nil, err
			}
			if desc.Platform != nil {
				p = desc.Platform.String()
			}
			if keepPlatform(p) {
				platforms = append(platforms, p)
			}
		default:
			return nil, fmt.Errorf("index lists %s with media type %q: only images and indexes can be stored", desc.Digest, desc.MediaType)
		}
	}
	raw, err := idx.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("reading index: %w", err)
	}
	mt, err := idx.MediaType()
	if err != nil {
		return nil, fmt.Errorf("reading index: %w", err)
	}
	if err := s.putManifest(ctx, repo, e, string(mt), raw); err != nil {
		return nil, err
	}
	return platforms, nil
}

// keepPlatform says whether a platform is worth listing: attestation manifests in indexes
// carry unknown/unknown.
func keepPlatform(p string) bool { return p != "" && p != "unknown/unknown" }

// putImage writes an image's config and layers, then its manifest, and returns its platform.
func (s *Store) putImage(ctx context.Context, repo distribution.Repository, e *entry, img v1.Image) (string, error) {
	m, err := img.Manifest()
	if err != nil {
		return "", fmt.Errorf("reading manifest: %w", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.limit)
	g.Go(func() error {
		raw, err := img.RawConfigFile()
		if err != nil {
			return fmt.Errorf("reading config %s: %w", m.Config.Digest, err)
		}
		return s.putBlob(gctx, repo, e, m.Config, func() (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader(string(raw))), nil
		})
	})
	for _, l := range m.Layers {
		g.Go(func() error {
			layer, err := img.LayerByDigest(l.Digest)
			if err != nil {
				return fmt.Errorf("reading layer %s: %w", l.Digest, err)
			}
			return s.putBlob(gctx, repo, e, l, layer.Compressed)
		})
	}
	if err := g.Wait(); err != nil {
		return "", err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return "", fmt.Errorf("reading manifest: %w", err)
	}
	mt, err := img.MediaType()
	if err != nil {
		return "", fmt.Errorf("reading manifest: %w", err)
	}
	if err := s.putManifest(ctx, repo, e, string(mt), raw); err != nil {
		return "", err
	}
	var platform string
	if cf, err := img.ConfigFile(); err == nil && cf.OS != "" {
		platform = (&v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}).String()
	}
	return platform, nil
}

// putManifest stores a manifest or index; distribution checks that everything it references is
// already in the repository.
func (s *Store) putManifest(ctx context.Context, repo distribution.Repository, e *entry, mediaType string, raw []byte) error {
	d := digest.FromBytes(raw)
	m, _, err := distribution.UnmarshalManifest(mediaType, raw)
	if err != nil {
		return fmt.Errorf("parsing manifest %s (%s): %w", d, mediaType, err)
	}
	ms, err := repo.Manifests(ctx)
	if err != nil {
		return fmt.Errorf("storing manifest %s: %w", d, err)
	}
	got, err := ms.Put(ctx, m)
	if err != nil {
		return fmt.Errorf("storing manifest %s: %w", d, err)
	}
	if got != d {
		return fmt.Errorf("storing manifest %s: distribution stored it as %s", d, got)
	}
	s.mu.Lock()
	e.blobs[d] = int64(len(raw))
	s.mu.Unlock()
	return nil
}

// putBlob makes the blob desc part of repo, writing it only if no other artifact has yet.
func (s *Store) putBlob(ctx context.Context, repo distribution.Repository, e *entry, desc v1.Descriptor, open func() (io.ReadCloser, error)) error {
	d := digest.Digest(desc.Digest.String())
	name := repo.Named().Name()
	s.mu.Lock()
	e.blobs[d] = desc.Size
	if s.repoBlobs[name][d] {
		s.mu.Unlock()
		return nil
	}
	bw, ok := s.blobs[d]
	if !ok {
		bw = &blobWrite{done: make(chan struct{}), repo: name, size: desc.Size}
		s.blobs[d] = bw
		s.mu.Unlock()
		bw.err = s.writeBlob(ctx, repo, d, desc.Size, string(desc.MediaType), open)
		if bw.err == nil {
			s.linked(name, d)
		}
		close(bw.done)
		return bw.err
	}
	s.mu.Unlock()
	select {
	case <-bw.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if bw.err != nil {
		return bw.err
	}
	if bw.size != desc.Size {
		return fmt.Errorf("blob %s: listed with size %d here and %d elsewhere", d, desc.Size, bw.size)
	}
	return s.mount(ctx, repo, bw.repo, d)
}

func (s *Store) linked(repo string, d digest.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.repoBlobs[repo] == nil {
		s.repoBlobs[repo] = map[digest.Digest]bool{}
	}
	s.repoBlobs[repo][d] = true
}

// mount links a blob already in the store into another repository without copying it.
func (s *Store) mount(ctx context.Context, repo distribution.Repository, from string, d digest.Digest) error {
	if from == repo.Named().Name() {
		return nil
	}
	src, err := reference.WithName(from)
	if err != nil {
		return err
	}
	canon, err := reference.WithDigest(src, d)
	if err != nil {
		return err
	}
	_, err = repo.Blobs(ctx).Create(ctx, storage.WithMountFrom(canon))
	var mounted distribution.ErrBlobMounted
	if !errors.As(err, &mounted) {
		return fmt.Errorf("linking blob %s from %s into %s: %w", d, from, repo.Named().Name(), err)
	}
	s.linked(repo.Named().Name(), d)
	return nil
}

// writeBlob streams a blob into the store; distribution checks its digest before committing it.
func (s *Store) writeBlob(ctx context.Context, repo distribution.Repository, d digest.Digest, size int64, mediaType string, open func() (io.ReadCloser, error)) error {
	if s.link != nil {
		if src, ok := s.link(d); ok && s.linkBlob(repo.Named().Name(), d, size, src) == nil {
			return nil
		}
	}
	rc, err := open()
	if err != nil {
		return fmt.Errorf("reading blob %s: %w", d, err)
	}
	defer rc.Close()
	w, err := repo.Blobs(ctx).Create(ctx)
	if err != nil {
		return fmt.Errorf("writing blob %s: %w", d, err)
	}
	n, err := io.Copy(w, rc)
	if err != nil {
		_ = w.Cancel(ctx)
		return fmt.Errorf("writing blob %s: %w", d, err)
	}
	if size >= 0 && n != size {
		_ = w.Cancel(ctx)
		return fmt.Errorf("writing blob %s: read %d bytes, its descriptor says %d", d, n, size)
	}
	if _, err := w.Commit(ctx, v1Descriptor(d, n, mediaType)); err != nil {
		return fmt.Errorf("writing blob %s: %w", d, err)
	}
	return nil
}

// linkBlob places a blob by hard-linking src, writing the same files distribution's blob
// writer would: the blob's data file and the repository's layer link. Any failure (another
// filesystem, a size that differs) leaves nothing behind, and the caller copies instead.
func (s *Store) linkBlob(repo string, d digest.Digest, size int64, src string) error {
	info, err := os.Stat(src)
	if err != nil || size >= 0 && info.Size() != size {
		return fmt.Errorf("linking blob %s from %s: not the expected file", d, src)
	}
	root := filepath.Join(s.dir, filepath.FromSlash(layout))
	hex := d.Encoded()
	data := filepath.Join(root, "blobs", d.Algorithm().String(), hex[:2], hex, "data")
	link := filepath.Join(root, "repositories", filepath.FromSlash(repo), "_layers", d.Algorithm().String(), hex, "link")
	//nolint:gosec // G301: the directory modes distribution's filesystem driver uses
	if err := os.MkdirAll(filepath.Dir(data), 0o777); err != nil {
		return err
	}
	if err := os.Link(src, data); err != nil {
		return err
	}
	//nolint:gosec // G301: as above
	err = os.MkdirAll(filepath.Dir(link), 0o777)
	if err == nil {
		//nolint:gosec // G306: the file mode distribution's filesystem driver uses
		err = os.WriteFile(link, []byte(d.String()), 0o666)
	}
	if err != nil {
		_ = os.Remove(data)
	}
	return err
}

// Seal writes bundle.json and bundle.sig, signed with key, and settles the tree for mastering:
// upload scratch directories go and every file gets the creation time, so that the same inputs
// give the same bytes. Nothing can be added after Seal.
func (s *Store) Seal(ctx context.Context, key ed25519.PrivateKey) (*Index, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("sealing store: no ed25519 signing key given (make one with cairn bundle keygen)")
	}
	s.mu.Lock()
	if s.sealed {
		s.mu.Unlock()
		return nil, errors.New("sealing store: already sealed")
	}
	s.sealed = true
	ix := &Index{Version: IndexVersion, Created: formatCreated(s.created), Artifacts: []Artifact{}}
	union := map[digest.Digest]int64{}
	for key, e := range s.artifacts {
		if e == nil {
			s.mu.Unlock()
			return nil, fmt.Errorf("sealing store: %s is still being added", key)
		}
		ix.Artifacts = append(ix.Artifacts, e.Artifact)
		ix.Totals.Bytes += e.Size
		for d, n := range e.blobs {
			union[d] = n
		}
	}
	s.mu.Unlock()
	sortArtifacts(ix.Artifacts)
	ix.Totals.Artifacts = len(ix.Artifacts)
	ix.Totals.Blobs = len(union)
	for _, n := range union {
		ix.Totals.StoredBytes += n
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := settleTree(s.dir, s.created); err != nil {
		return nil, fmt.Errorf("sealing store: %w", err)
	}
	b, err := ix.Marshal()
	if err != nil {
		return nil, err
	}
	sig := ed25519.Sign(key, b)
	if err := writeFileAtomic(filepath.Join(s.dir, SignatureFile), sig, s.created); err != nil {
		return nil, fmt.Errorf("sealing store: %w", err)
	}
	// Blobs and links were written unsynced (see writeDriver): make them durable before the
	// index that vouches for them. bundle.json goes last: a store without it is unfinished,
	// and Verify says so.
	if err := syncStore(s.dir); err != nil {
		return nil, fmt.Errorf("sealing store: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(s.dir, IndexFile), b, s.created); err != nil {
		return nil, fmt.Errorf("sealing store: %w", err)
	}
	if err := os.Chtimes(s.dir, s.created, s.created); err != nil {
		return nil, fmt.Errorf("sealing store: %w", err)
	}
	return ix, nil
}

// settleTree removes distribution's empty upload directories and stamps every path with t.
// It works inside an os.Root so that nothing outside the store can be touched.
func settleTree(dir string, t time.Time) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	var uploads, dirs []string
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "_uploads" {
			uploads = append(uploads, p)
			return fs.SkipDir
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, u := range uploads {
		if err := root.RemoveAll(u); err != nil {
			return err
		}
	}
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		return root.Chtimes(p, t, t)
	})
	if err != nil {
		return err
	}
	// Directories last, deepest first: touching a child changes its parent's time.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := root.Chtimes(dirs[i], t, t); err != nil {
			return err
		}
	}
	return nil
}

func writeFileAtomic(path string, b []byte, t time.Time) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	if err := os.Chtimes(tmp, t, t); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
