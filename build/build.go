package build

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	getter "github.com/hashicorp/go-getter/v2"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"

	agentapi "github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/appliance"
	"github.com/cairn-appliance/cairn/build/iso"
	"github.com/cairn-appliance/cairn/site"
)

// Options says what one build does.
type Options struct {
	Config   string // build.toml
	Output   string // the store directory to write; it must not exist or be empty
	CacheDir string // the download cache; "" means DefaultCacheDir
	Locked   bool   // build only what build.lock pins, and leave it as it is
	PlanOnly bool   // resolve, size and check free space, print the plan, fetch no blob
	Jobs     int    // artifacts fetched at once; 0 means 4
	Created  time.Time

	Stdout   io.Writer // the plan
	Progress io.Writer // bars or lines; nil means no progress
	Terminal bool      // draw bars rather than lines

	// Attempts is how often a source download is tried before the build fails; 0 means 3.
	Attempts int

	// ISO, when set, is the bootable ISO to master from the store (see masterISO).
	ISO string
	// VolumeLabel names the ISO's volume; empty means appliance.MediumLabel.
	VolumeLabel string
	// CairnBinary is the cairn executable the appliance runs; empty means this process's.
	CairnBinary string
	// AgentBinary is the static cairn-agent [agent] carries when build.toml's agent.binary does
	// not name one; empty means cairn-agent beside CairnBinary (or this executable).
	AgentBinary string
	// Log receives the output of the tools that build the base and master the ISO.
	Log io.Writer
}

// Result is what a build did.
type Result struct {
	Plan  *Plan
	Lock  *Lock
	Index *airgap.Index // nil for a plan
	ISO   *iso.Result   // when Options.ISO was set
	Agent *AgentReport  // when build.toml has [agent] and the store was written

	BlobsFetched int64 // registry blobs downloaded
	BlobBytes    int64
	BlobsCached  int64 // registry blobs taken from the cache
}

// Run builds the store Options describes: it loads and checks build.toml (and the site seed),
// resolves every reference (pinned by build.lock with Locked), plans sizes and checks free
// space before fetching anything, then fetches into the cache and writes the signed store.
// The store appears at Output only when complete; on failure or cancellation nothing is left
// there (the cache keeps what it verified, and partial downloads to resume).
func Run(ctx context.Context, o Options) (*Result, error) {
	cfg, err := LoadConfig(o.Config)
	if err != nil {
		return nil, err
	}
	lockPath := filepath.Join(filepath.Dir(o.Config), "build.lock")
	lock, err := ReadLock(lockPath)
	if err != nil {
		return nil, err
	}
	if o.Locked && lock == nil {
		return nil, fmt.Errorf("--locked: there is no %s; run cairn build without --locked once to write it, and commit it", lockPath)
	}
	if cfg.Site.Seed != "" {
		if _, err := site.Load(cfg.Resolve(cfg.Site.Seed)); err != nil {
			return nil, fmt.Errorf("site seed %s (site.seed in %s):\n%w", cfg.Resolve(cfg.Site.Seed), o.Config, err)
		}
	}
	key, err := airgap.LoadPrivateKey(cfg.Resolve(cfg.Signing.Key))
	if err != nil {
		return nil, fmt.Errorf("signing key (signing.key in %s): %w; make one with cairn bundle keygen", o.Config, err)
	}
	if o.CacheDir == "" {
		if o.CacheDir, err = DefaultCacheDir(); err != nil {
			return nil, err
		}
	}
	cache := &Cache{Dir: o.CacheDir}
	if err := cache.init(); err != nil {
		return nil, err
	}
	o.Jobs = positiveOr(o.Jobs, 4)
	jobs := o.Jobs
	var counters Counters
	reg, err := newRegistry(ctx, newCachingTransport(cache, remote.DefaultTransport, &counters), jobs)
	if err != nil {
		return nil, err
	}
	f := &fetcher{cache: cache, pwd: filepath.Dir(o.Config), attempts: positiveOr(o.Attempts, 3)}
	var agent string
	if cfg.Agent != nil {
		if agent, err = agentBinary(cfg, o); err != nil {
			return nil, err
		}
	}

	images, sources, err := resolveAll(ctx, cfg, lock, o.Locked, reg, f, jobs)
	if err != nil {
		return nil, err
	}
	plan := makePlan(images, sources, cache, agentPlan(cfg, cache, agent))
	if err := plan.check(o.Output, o.CacheDir); err != nil {
		return &Result{Plan: plan}, err
	}
	newLock := &Lock{Version: LockVersion}
	for _, im := range images {
		newLock.Containers = append(newLock.Containers, im.locked())
	}
	for _, s := range sources {
		newLock.Sources = append(newLock.Sources, LockedSource(s))
	}
	res := &Result{Plan: plan, Lock: newLock}
	if o.PlanOnly {
		if o.Stdout != nil {
			return res, plan.Print(o.Stdout)
		}
		return res, nil
	}
	if err := checkOutput(o.Output); err != nil {
		return res, err
	}
	if !o.Locked {
		if err := newLock.Write(lockPath); err != nil {
			return res, fmt.Errorf("writing %s: %w", lockPath, err)
		}
	}
	res.Index, res.Agent, err = write(ctx, o, cfg, key, images, sources, f, agent)
	res.BlobsFetched, res.BlobBytes, res.BlobsCached = counters.BlobsFetched.Load(), counters.BlobBytes.Load(), counters.BlobsCached.Load()
	if err != nil || o.ISO == "" {
		return res, err
	}
	if res.ISO, err = masterISO(ctx, o, cfg, f); err != nil {
		// All or nothing: the store without the ISO asked for would also stand in the way of
		// the next run (-o must be new or empty). The cache makes writing it again cheap.
		_ = os.RemoveAll(o.Output)
	}
	return res, err
}

// masterISO puts the appliance base, a layer with the cairn binary, the store at o.Output and
// the site seed on a bootable hybrid ISO at o.ISO (and o.ISO + ".sha256").
func masterISO(ctx context.Context, o Options, cfg *Config, f *fetcher) (*iso.Result, error) {
	base, err := applianceBase(ctx, o, cfg, f)
	if err != nil {
		return nil, err
	}
	exe := o.CairnBinary
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("finding the cairn binary to put on the ISO (give --cairn-binary): %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(o.ISO), 0o755); err != nil { //nolint:gosec // the ISO is for everyone
		return nil, err
	}
	layer, err := os.MkdirTemp(filepath.Dir(o.ISO), ".cairn-layer-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(layer)
	if err := appliance.WriteCairnLayer(layer, exe); err != nil {
		return nil, err
	}
	seed := ""
	if cfg.Site.Seed != "" {
		seed = cfg.Resolve(cfg.Site.Seed)
	}
	return iso.Master(ctx, iso.Config{
		Base: base, Layers: []string{layer}, Store: o.Output, SiteSeed: seed, Output: o.ISO,
		VolumeLabel: o.VolumeLabel, SourceDateEpoch: o.Created, Log: o.Log,
	})
}

// applianceBase returns a directory holding the appliance base: [appliance] base when
// build.toml names one (a directory, or any go-getter source, an archive included, fetched into
// the cache), else the base built from appliance/'s recipe (cached by its hash).
func applianceBase(ctx context.Context, o Options, cfg *Config, f *fetcher) (string, error) {
	src := cfg.Appliance.Base
	if src == "" {
		return appliance.Build(ctx, appliance.BuildConfig{Log: o.Log})
	}
	if dir := cfg.Resolve(src); appliance.CheckBase(dir) == nil {
		return dir, nil
	}
	sum := sha256.Sum256([]byte(src + "\x00" + cfg.Appliance.SHA256))
	dir := filepath.Join(f.cache.Dir, "bases", hex.EncodeToString(sum[:]))
	if appliance.CheckBase(dir) == nil {
		return dir, nil
	}
	get := src
	if cfg.Appliance.SHA256 != "" {
		sep := "?"
		if strings.Contains(get, "?") {
			sep = "&"
		}
		get += sep + "checksum=sha256:" + cfg.Appliance.SHA256
	}
	tmp := dir + ".partial"
	_ = os.RemoveAll(tmp)
	client := &getter.Client{} // archives are unpacked: a base is often published as one
	if _, err := client.Get(ctx, &getter.Request{Src: get, Dst: tmp, Pwd: f.pwd, GetMode: getter.ModeAny}); err != nil {
		_ = os.RemoveAll(tmp)
		return "", fmt.Errorf("fetching the appliance base (appliance.base in %s) from %s: %w", cfg.Path, src, err)
	}
	if err := appliance.CheckBase(tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return "", fmt.Errorf("the appliance base from %s: %w", src, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return dir, nil
}

// positiveOr is v, or def when v is not positive (an unset option).
func positiveOr(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// resolveAll resolves every image (manifests only) and sizes every source, in parallel.
func resolveAll(ctx context.Context, cfg *Config, lock *Lock, locked bool, reg *registry, f *fetcher, jobs int) ([]*image, []source, error) {
	images := make([]*image, len(cfg.Containers))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	for i, c := range cfg.Containers {
		var pin *LockedImage
		if locked {
			pin = lock.image(c.Ref)
			if pin == nil {
				return nil, nil, fmt.Errorf("--locked: build.lock does not pin image %s; run cairn build without --locked to update the lock", c.Ref)
			}
			var pinned []string
			for _, p := range pin.Platforms {
				pinned = append(pinned, p.Platform)
			}
			if !sameSet(pinned, c.Platforms) {
				return nil, nil, fmt.Errorf("--locked: build.lock pins image %s for %s, but build.toml asks for %s; run cairn build without --locked to update the lock",
					c.Ref, strings.Join(pinned, ", "), strings.Join(c.Platforms, ", "))
			}
		}
		g.Go(func() error {
			// Not gctx: the images keep the context for the blobs they fetch later.
			im, err := reg.resolve(ctx, c, pin)
			images[i] = im
			return err
		})
	}
	var sources []source
	for _, o := range cfg.OSImages {
		sources = append(sources, source{Kind: "os_image", Name: o.Name, Source: o.Source, SHA256: o.SHA256})
	}
	for _, n := range cfg.Netboot {
		sources = append(sources, source{Kind: "netboot", Name: n.Name, Source: n.Source, SHA256: n.SHA256})
	}
	for _, fl := range cfg.Files {
		sources = append(sources, source{Kind: "file", Name: fl.Name, Source: fl.Source, SHA256: fl.SHA256})
	}
	sources = append(sources, agentSources(cfg)...)
	for i := range sources {
		s := &sources[i]
		pin := lock.source(s.Kind, s.Name)
		if locked && (pin == nil || pin.Source != s.Source || pin.SHA256 != s.SHA256) {
			return nil, nil, fmt.Errorf("--locked: build.lock does not pin %s with source %s and sha256 %s; run cairn build without --locked to update the lock", s.label(), s.Source, s.SHA256)
		}
		g.Go(func() error {
			s.Size = -1
			if pin != nil && pin.SHA256 == s.SHA256 && pin.Size > 0 {
				s.Size = pin.Size
			} else {
				s.Size = f.sizeOf(gctx, *s)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	return images, sources, nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// sourceRepo is where the store carries each kind of source.
var sourceRepo = map[string]string{"os_image": "os/", "netboot": "netboot/", "file": "files/"}

// makePlan adds up sizes, shared blobs once, and what the cache already holds. made are the
// artifacts the build makes itself (the agent's), sized as far as they can be beforehand.
func makePlan(images []*image, sources []source, cache *Cache, made []PlannedArtifact) *Plan {
	p := &Plan{}
	unique := map[string]int64{}
	inputs := map[string]int64{} // sources read to make artifacts, not stored: sha256 -> size
	for _, im := range images {
		a := PlannedArtifact{Kind: "image", Name: im.label(), Ref: im.storeName, Size: im.size()}
		for _, pl := range im.platforms {
			a.Platforms = append(a.Platforms, pl.platform)
		}
		for _, b := range im.blobs {
			unique[b.Digest.Hex] = b.Size
			if cache.Has(b.Digest.Hex) {
				a.Cached += b.Size
			}
		}
		p.Artifacts = append(p.Artifacts, a)
		p.Total += a.Size
	}
	for _, s := range sources {
		a := PlannedArtifact{Kind: s.Kind, Name: s.Name, Ref: sourceRepo[s.Kind] + s.Name + ":latest", Size: s.Size}
		if cache.Has(s.SHA256) {
			a.Cached = max(s.Size, 0)
		}
		if n, ok := cache.convertedSize(s.SHA256); ok && s.Kind == "os_image" {
			// A qcow2 image converted before: the store carries the conversion, and nothing
			// is fetched.
			a.Size, a.Cached = n, n
			unique["converted:"+s.SHA256] = n
			p.Total += n
			p.Artifacts = append(p.Artifacts, a)
			continue
		}
		if s.Kind == kindAgent {
			a.Name, a.Ref, a.Input = s.label(), "", true
			if s.Size < 0 {
				p.Unknown++
			} else if !cache.Has(s.SHA256) {
				inputs[s.SHA256] = s.Size
			}
			p.Artifacts = append(p.Artifacts, a)
			continue
		}
		if s.Size < 0 {
			p.Unknown++
		} else {
			unique[s.SHA256] = s.Size
			p.Total += s.Size
		}
		p.Artifacts = append(p.Artifacts, a)
	}
	for _, a := range made {
		if a.Size < 0 {
			p.Unknown++
		} else {
			unique["made:"+a.Ref] = a.Size
			p.Total += a.Size
		}
		p.Artifacts = append(p.Artifacts, a)
	}
	p.blobs = unique
	for h, n := range unique {
		p.Unique += n
		if !cache.Has(h) && !strings.HasPrefix(h, "made:") && !strings.HasPrefix(h, "converted:") {
			p.Fetch += n
		}
	}
	for _, n := range inputs {
		p.Fetch += n
	}
	return p
}

// checkOutput refuses an output directory that exists and is not empty.
func checkOutput(out string) error {
	if out == "" {
		return errors.New("no output directory: give -o DIR")
	}
	ents, err := os.ReadDir(out)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("output %s: %w", out, err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("output %s exists and is not empty; give a new directory, or remove it first", out)
	}
	return nil
}

// write fetches everything into the cache and writes the store beside Output, then moves it
// into place. Nothing is left beside Output when it fails.
func write(ctx context.Context, o Options, cfg *Config, key ed25519.PrivateKey, images []*image, sources []source, f *fetcher, agent string) (idx *airgap.Index, rep *AgentReport, err error) {
	parent := filepath.Dir(filepath.Clean(o.Output))
	if err := os.MkdirAll(parent, 0o755); err != nil { //nolint:gosec // the store is meant to be read by everyone
		return nil, nil, fmt.Errorf("creating %s: %w", parent, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(o.Output)+".cairn-build-")
	if err != nil {
		return nil, nil, fmt.Errorf("creating the store beside %s: %w", o.Output, err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(tmp)
		}
	}()
	storeDir := filepath.Join(tmp, "store")
	store, err := airgap.Create(ctx, airgap.StoreConfig{Dir: storeDir, Created: o.Created, Concurrency: runtime.GOMAXPROCS(0) * 2, LinkFrom: f.cache.linkFrom})
	if err != nil {
		return nil, nil, err
	}
	var prog progress = nopProgress{}
	if o.Progress != nil {
		prog = newProgress(ctx, o.Progress, o.Terminal)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Jobs)
	for _, im := range images {
		g.Go(func() error {
			t := prog.track(im.label(), im.size())
			err := addImage(gctx, store, im, t.add)
			t.finish(err)
			return err
		})
	}
	var agentSrcs []source
	for _, s := range sources {
		if s.Kind == kindAgent {
			agentSrcs = append(agentSrcs, s)
			continue
		}
		g.Go(func() error {
			t := prog.track(s.label(), s.Size)
			ff := *f
			ff.progress = func(_ source, done, total int64) { t.set(done, total) }
			err := addSource(gctx, store, cfg, s, &ff)
			t.finish(err)
			return err
		})
	}
	if cfg.Agent != nil {
		g.Go(func() error {
			var err error
			rep, err = addAgent(gctx, store, cfg, o.Created, agent, tmp, agentSrcs, f, prog)
			return err
		})
	}
	err = g.Wait()
	prog.wait()
	if err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if idx, err = store.Seal(ctx, key); err != nil {
		return nil, nil, err
	}
	if err := checkUncompressed(cfg, idx); err != nil {
		return nil, nil, err
	}
	if err := os.Remove(o.Output); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("replacing the empty %s: %w", o.Output, err)
	}
	if err := os.Rename(storeDir, o.Output); err != nil {
		return nil, nil, fmt.Errorf("moving the store into place at %s: %w", o.Output, err)
	}
	return idx, rep, os.Remove(tmp)
}

func addImage(ctx context.Context, store *airgap.Store, im *image, add func(int64)) error {
	name, img, idx := im.storeName, im.img, im.index
	if img != nil {
		cf, err := img.ConfigFile()
		if err != nil {
			return fmt.Errorf("image %s: reading its config: %w", im.label(), err)
		}
		want, _ := parsePlatform(im.platforms[0].platform)
		if cf.OS != "" && (cf.OS != want.OS || cf.Architecture != want.Architecture || want.Variant != "" && cf.Variant != want.Variant) {
			return fmt.Errorf("image %s is for %s/%s, not %s; set platforms in build.toml to what it is", im.label(), cf.OS, cf.Architecture, im.platforms[0].platform)
		}
		return store.AddImage(ctx, name, countedImage{Image: img, add: add})
	}
	return store.AddIndex(ctx, name, countedIndex{index: idx, add: add})
}

func addSource(ctx context.Context, store *airgap.Store, cfg *Config, s source, f *fetcher) error {
	if s.Kind == "os_image" {
		return addOSImage(ctx, store, cfg, s, f)
	}
	path, err := f.fetch(ctx, s)
	if err != nil {
		return err
	}
	switch s.Kind {
	case "netboot":
		i := slices.IndexFunc(cfg.Netboot, func(n Netboot) bool { return n.Name == s.Name })
		return store.AddNetboot(ctx, airgap.NetbootAsset{Name: s.Name, Path: path, Type: airgap.NetbootType(cfg.Netboot[i].Type)})
	default:
		return store.AddFile(ctx, airgap.File{Name: s.Name, Path: path})
	}
}

// addOSImage adds an [[os_image]]. A qcow2 image (by format, or by its content) is carried as
// raw+zstd, which the agent streams to disk as it comes: the build converts it once, and the
// cache keeps the conversion by the source's sha256, so that a rebuild neither converts nor
// fetches the source again.
func addOSImage(ctx context.Context, store *airgap.Store, cfg *Config, s source, f *fetcher) error {
	i := slices.IndexFunc(cfg.OSImages, func(o OSImage) bool { return o.Name == s.Name })
	format := airgap.OSFormat(cfg.OSImages[i].Format)
	if _, ok := f.cache.convertedSize(s.SHA256); ok && (format == "" || format == airgap.FormatQcow2) {
		return store.AddOSImage(ctx, airgap.OSImage{Name: s.Name, Path: f.cache.convertedPath(s.SHA256), Format: airgap.FormatRawZstd})
	}
	path, err := f.fetch(ctx, s)
	if err != nil {
		return err
	}
	if format == "" || format == airgap.FormatQcow2 {
		qcow, err := isQcow2(path)
		if err != nil {
			return fmt.Errorf("%s: %w", s.label(), err)
		}
		if format == airgap.FormatQcow2 && !qcow {
			return fmt.Errorf("%s from %s: format is qcow2, but the file does not start as a qcow2 image does; fix format in build.toml, or the source", s.label(), s.Source)
		}
		if qcow {
			if path, err = f.convertQcow2(ctx, s, path); err != nil {
				return err
			}
			format = airgap.FormatRawZstd
		}
	}
	if err := checkZstdWindow(path); err != nil {
		return fmt.Errorf("%s from %s: %w", s.label(), s.Source, err)
	}
	return store.AddOSImage(ctx, airgap.OSImage{Name: s.Name, Path: path, Format: format})
}

// checkZstdWindow refuses a zstd image whose window is larger than the netboot agent decodes
// (agent/api.MaxZstdWindow): the agent would refuse it on every host, after the build and the
// medium were made. Other formats pass.
func checkZstdWindow(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	b := make([]byte, zstd.HeaderMaxSize)
	n, _ := io.ReadFull(f, b)
	var h zstd.Header
	if h.Decode(b[:n]) != nil || h.WindowSize <= agentapi.MaxZstdWindow {
		return nil // not zstd (or a skippable frame first), or a window the agent takes
	}
	return fmt.Errorf("its zstd window is %s, larger than the %s the netboot agent decodes with bounded memory; compress it again without --long or --ultra (zstd -T0 -12 IMAGE keeps the window at most 8 MiB)",
		FormatBytes(int64(h.WindowSize)), FormatBytes(agentapi.MaxZstdWindow)) //nolint:gosec // a window size
}

// checkUncompressed compares the uncompressed digests the store measured with build.toml's.
func checkUncompressed(cfg *Config, idx *airgap.Index) error {
	for _, o := range cfg.OSImages {
		if o.UncompressedSHA256 == "" {
			continue
		}
		for _, a := range idx.Artifacts {
			if a.Kind != airgap.KindOS || a.Repository != "os/"+o.Name || a.OS == nil {
				continue
			}
			if got := strings.TrimPrefix(a.OS.UncompressedDigest.String(), "sha256:"); got != o.UncompressedSHA256 {
				return fmt.Errorf("%w: os_image %s from %s: expected uncompressed sha256 %s, got %s; fix uncompressed_sha256 in build.toml",
					ErrChecksum, o.Name, o.Source, o.UncompressedSHA256, got)
			}
		}
	}
	return nil
}

type nopProgress struct{}

func (nopProgress) track(string, int64) tracker { return nopTracker{} }
func (nopProgress) wait()                       {}

type nopTracker struct{}

func (nopTracker) add(int64)        {}
func (nopTracker) set(int64, int64) {}
func (nopTracker) finish(error)     {}
