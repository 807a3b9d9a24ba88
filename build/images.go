package build

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// image is one [[container]] resolved to exact manifests: what to carry, under which name, and
// every blob that costs.
type image struct {
	cfg    Container
	ref    name.Reference // the ref as written
	digest v1.Hash        // what it resolved to (manifest or index)
	mt     types.MediaType

	desc      *remote.Descriptor
	platforms []platformImage // the platform images carried
	index     v1.ImageIndex   // with more than one platform: the index to carry
	img       v1.Image        // with one platform: the image to carry
	storeName string          // what the store carries it as
	blobs     []v1.Descriptor // manifests, configs and layers, each once
}

type platformImage struct {
	platform string
	digest   v1.Hash
	img      v1.Image
	size     int64
}

func (im *image) label() string {
	if im.cfg.Rename != "" {
		return im.cfg.Rename
	}
	return im.cfg.Ref
}

// size is what the image costs before de-duplication.
func (im *image) size() int64 {
	var n int64
	for _, b := range im.blobs {
		n += b.Size
	}
	return n
}

// registry talks to container registries for a build: one puller (tokens are reused), docker
// credentials (~/.docker/config.json and credential helpers), retries with backoff, and the
// blob cache in front of the network.
type registry struct {
	puller *remote.Puller
	opts   []remote.Option
}

func newRegistry(ctx context.Context, t *cachingTransport, jobs int) (*registry, error) {
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithTransport(t),
		remote.WithJobs(max(jobs, 1)),
		remote.WithRetryBackoff(remote.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 5}),
		remote.WithUserAgent("cairn-build"),
	}
	p, err := remote.NewPuller(opts...)
	if err != nil {
		return nil, err
	}
	return &registry{puller: p, opts: append(opts, remote.Reuse(p))}, nil
}

// resolve fetches the manifests of c (pinned by the lock when it has c) and works out what to
// carry. It fetches no config or layer.
func (r *registry) resolve(ctx context.Context, c Container, pin *LockedImage) (*image, error) {
	ref, err := name.ParseReference(c.Ref)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", c.Ref, err)
	}
	get := ref
	if pin != nil {
		get = ref.Context().Digest(pin.Digest)
	}
	desc, err := r.puller.Get(ctx, get)
	if err != nil {
		return nil, fmt.Errorf("image %s: fetching its manifest from %s: %w", c.Ref, ref.Context().RegistryStr(), err)
	}
	if d, ok := ref.(name.Digest); ok && d.DigestStr() != desc.Digest.String() {
		return nil, fmt.Errorf("image %s: the registry answered with %s", c.Ref, desc.Digest)
	}
	im := &image{cfg: c, ref: ref, digest: desc.Digest, mt: desc.MediaType, desc: desc}
	seen := map[v1.Hash]bool{}
	addBlob := func(d v1.Descriptor) {
		if !seen[d.Digest] {
			seen[d.Digest] = true
			im.blobs = append(im.blobs, d)
		}
	}
	if !desc.MediaType.IsIndex() {
		if len(c.Platforms) != 1 {
			return nil, fmt.Errorf("image %s is a single-platform image; it cannot provide %s: list one platform", c.Ref, strings.Join(c.Platforms, ", "))
		}
		img, err := desc.Image()
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", c.Ref, err)
		}
		addBlob(desc.Descriptor)
		pi, err := platformOf(img, c.Platforms[0], desc.Digest, desc.Size, addBlob)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", c.Ref, err)
		}
		im.platforms = []platformImage{pi}
		return im, im.carry()
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", c.Ref, err)
	}
	manifest, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("image %s: reading its index: %w", c.Ref, err)
	}
	var offered []string
	for _, m := range manifest.Manifests {
		if m.Platform != nil && m.MediaType.IsImage() {
			offered = append(offered, m.Platform.String())
		}
	}
	for _, want := range c.Platforms {
		p, _ := parsePlatform(want)
		i := slices.IndexFunc(manifest.Manifests, func(m v1.Descriptor) bool {
			return m.Platform != nil && m.MediaType.IsImage() && m.Platform.Satisfies(p)
		})
		if i < 0 {
			return nil, fmt.Errorf("image %s has no %s; it offers %s", c.Ref, want, strings.Join(offered, ", "))
		}
		m := manifest.Manifests[i]
		img, err := idx.Image(m.Digest)
		if err != nil {
			return nil, fmt.Errorf("image %s (%s): %w", c.Ref, want, err)
		}
		addBlob(m)
		pi, err := platformOf(img, want, m.Digest, m.Size, addBlob)
		if err != nil {
			return nil, fmt.Errorf("image %s (%s): %w", c.Ref, want, err)
		}
		im.platforms = append(im.platforms, pi)
	}
	if len(im.platforms) == 1 {
		return im, im.carry()
	}
	// More than one platform: carry the index as it is when it lists nothing else, or else an
	// index cut down to the platforms asked for (whose digest then differs from upstream's).
	im.index = idx
	top := desc.Descriptor
	if len(im.platforms) < len(manifest.Manifests) {
		keep := map[v1.Hash]bool{}
		for _, p := range im.platforms {
			keep[p.digest] = true
		}
		im.index = mutate.RemoveManifests(idx, func(d v1.Descriptor) bool { return !keep[d.Digest] })
		raw, err := im.index.RawManifest()
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", c.Ref, err)
		}
		top = v1.Descriptor{MediaType: desc.MediaType, Size: int64(len(raw)), Digest: mustDigest(im.index)}
	}
	addBlob(top)
	return im, im.carry()
}

// platformOf reads one platform image's manifest and adds its config and layers to the blobs.
func platformOf(img v1.Image, platform string, dgst v1.Hash, manifestSize int64, addBlob func(v1.Descriptor)) (platformImage, error) {
	m, err := img.Manifest()
	if err != nil {
		return platformImage{}, fmt.Errorf("reading manifest %s: %w", dgst, err)
	}
	size := manifestSize + m.Config.Size
	addBlob(m.Config)
	for _, l := range m.Layers {
		addBlob(l)
		size += l.Size
	}
	return platformImage{platform: platform, digest: dgst, img: img, size: size}, nil
}

// locked is the lock entry for what im resolved to.
func (im *image) locked() LockedImage {
	l := LockedImage{Ref: im.cfg.Ref, Digest: im.digest.String(), MediaType: string(im.mt)}
	for _, p := range im.platforms {
		l.Platforms = append(l.Platforms, LockedPlatform{Platform: p.platform, Digest: p.digest.String(), Size: p.size})
	}
	return l
}

// storeRepository is the repository an image is carried under: its upstream name, except that
// a registry port becomes "_PORT" ("registry.local:5000/team/web" is carried as
// "registry.local_5000/team/web"), since a store path cannot hold ':' and no host name holds '_'.
func storeRepository(r name.Repository) string {
	return strings.Replace(r.Name(), ":", "_", 1)
}

func mustDigest(idx v1.ImageIndex) v1.Hash {
	d, err := idx.Digest()
	if err != nil {
		panic(err) // the manifest was just computed in memory
	}
	return d
}

// carry decides what goes into the store and under which name: one platform image, or an
// index. The name keeps the tag; a digest-pinned ref is carried under the digest stored.
func (im *image) carry() error {
	base := im.cfg.Ref
	if im.cfg.Rename != "" {
		base = im.cfg.Rename
	}
	ref, err := name.ParseReference(base)
	if err != nil {
		return err
	}
	d := im.platforms[0].digest
	if im.index == nil {
		im.img = im.platforms[0].img
	} else if d, err = im.index.Digest(); err != nil {
		return err
	}
	im.storeName = storeRepository(ref.Context()) + "@" + d.String()
	if t, ok := ref.(name.Tag); ok {
		im.storeName = storeRepository(ref.Context()) + ":" + t.TagStr()
	}
	return nil
}
