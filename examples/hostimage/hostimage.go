// Package hostimage builds the example host OS that cairn's demo provisions: a small Debian
// trixie disk image (GPT with a BIOS boot partition, an ESP and an ext4 root as the last
// partition; GRUB for BIOS and UEFI; systemd, cloud-init limited to NoCloud, openssh-server and
// podman), compressed with zstd, and caches it by the hash of its recipe.
//
// The recipe (recipe/: the package list, the layout with its fixed UUIDs, mke2fs's settings,
// the overlay and build-image.sh) is embedded. build-image.sh installs the tree with mmdebstrap
// and makes the file systems from directories, without mounting anything; this package then
// writes GRUB's BIOS boot code into the MBR and the BIOS boot partition, hashes the disk and
// compresses it. Building needs root and Debian's mirror; a cached image costs nothing.
package hostimage

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"time"

	"github.com/cairn-appliance/cairn/appliance"
)

// The files of a cached image, in its directory.
const (
	// ImageFile is the zstd-compressed raw disk image.
	ImageFile = "debian-13-host.raw.zst"
	// InfoFile describes ImageFile as JSON (see Info).
	InfoFile = "debian-13-host.json"
	// SumFile holds ImageFile's sha256 in sha256sum's format: `sha256sum -c` reads it.
	SumFile = ImageFile + ".sha256"
	// PackagesFile lists the Debian packages in the image, "name version" a line.
	PackagesFile = "packages.txt"
	// completeFile marks a cached image as finished; a directory without it is ignored.
	completeFile = "recipe.sha256"
)

// Format is the image's format as build.toml's os_image.format spells it.
const Format = "raw+zstd"

// zstdArgs compress the image: level 12 takes about 15 s for the image's 550 MiB of data (19
// made it 5% smaller in twenty times as long). No --long: level 12's own window (8 MiB) keeps
// the netboot agent's decoder small, far under the most it takes (agent/api.MaxZstdWindow).
var zstdArgs = []string{"-12", "-T2", "-q", "-c"}

// assembly names how this Go code turns build-image.sh's output into the image's bytes (BIOS
// boot code, compression); change it with that code so the cache key changes too.
var assembly = "bios-boot-v1 zstd " + zstdArgs[0]

//go:embed all:recipe
var recipe embed.FS

// Info describes a built image; InfoFile holds it as JSON.
type Info struct {
	// Dir is the cache directory holding the image (not in the JSON).
	Dir string `json:"-"`
	// File is ImageFile, the compressed image's name in Dir.
	File string `json:"file"`
	// Format is Format.
	Format string `json:"format"`
	// SHA256 and Size are the compressed file's.
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// UncompressedSHA256 and UncompressedSize are the raw disk's.
	UncompressedSHA256 string `json:"uncompressed_sha256"`
	UncompressedSize   int64  `json:"uncompressed_size"`
	// Recipe is the recipe key that names Dir.
	Recipe string `json:"recipe"`
	// RootUUID is the root file system's UUID, and Hostname the one the image has until
	// cloud-init sets the machine's own.
	RootUUID string `json:"root_uuid"`
	Hostname string `json:"hostname"`
}

// Path returns the compressed image's path.
func (i Info) Path() string { return filepath.Join(i.Dir, i.File) }

// RecipeKey returns the hash that names an image built from this recipe: the sha256 over every
// recipe file's path and content and over how this package assembles the disk, so any edit to
// the packages, the layout, the overlay or the build script gives a new key.
func RecipeKey() string {
	return appliance.TreeKey(recipe, "recipe", fmt.Sprintf("assembly\x00%s\x00", assembly))
}

// CacheEnv names the environment variable that, when set, overrides DefaultCacheDir.
const CacheEnv = "CAIRN_HOST_IMAGE_CACHE"

// DefaultCacheDir is where images are kept unless told otherwise: $CAIRN_HOST_IMAGE_CACHE, else
// cairn/host-image under the user cache directory (~/.cache on Linux).
func DefaultCacheDir() (string, error) {
	if d := os.Getenv(CacheEnv); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the host image cache: %w; give a cache directory", err)
	}
	return filepath.Join(d, "cairn", "host-image"), nil
}

// ErrNotBuilt says the cache holds no image for this recipe.
var ErrNotBuilt = errors.New("hostimage: no image for this recipe in the cache; make host-image builds it")

// Cached returns the image for this recipe from cacheDir (empty means DefaultCacheDir), or an
// error wrapping ErrNotBuilt when it has not been built. It reads the description only; it
// does not re-hash the image.
func Cached(cacheDir string) (Info, error) {
	if cacheDir == "" {
		var err error
		if cacheDir, err = DefaultCacheDir(); err != nil {
			return Info{}, err
		}
	}
	key := RecipeKey()
	dir := filepath.Join(cacheDir, key[:16])
	if b, err := os.ReadFile(filepath.Join(dir, completeFile)); err != nil || string(bytes.TrimSpace(b)) != key {
		return Info{}, fmt.Errorf("%w (looked in %s)", ErrNotBuilt, dir)
	}
	b, err := os.ReadFile(filepath.Join(dir, InfoFile))
	if err != nil {
		return Info{}, fmt.Errorf("cached host image %s: %w; remove %s to rebuild it", key[:16], err, dir)
	}
	var info Info
	if err := json.Unmarshal(b, &info); err != nil {
		return Info{}, fmt.Errorf("cached host image: reading %s: %w; remove %s to rebuild it", InfoFile, err, dir)
	}
	info.Dir = dir
	fi, err := os.Stat(info.Path())
	if err != nil || fi.Size() != info.Size {
		return Info{}, fmt.Errorf("cached host image %s: %s is missing or not %d bytes; remove %s to rebuild it", key[:16], info.File, info.Size, dir)
	}
	return info, nil
}

// Config says where images are cached and how a missing one is built.
type Config struct {
	// CacheDir holds one directory per recipe key. Empty means DefaultCacheDir.
	CacheDir string
	// Mirror is the Debian mirror mmdebstrap installs from. Empty means deb.debian.org.
	Mirror string
	// Log receives the build's output. Nil discards it.
	Log io.Writer
}

// Build returns the image for this recipe, building it first when the cache does not hold it.
// Building needs root (mmdebstrap installs a kernel and makes an initramfs) and takes minutes;
// the image is made beside its final place and renamed into it only when complete, so an
// interrupted build leaves nothing that a later call would take for an image.
func Build(ctx context.Context, cfg Config) (Info, error) {
	cache := cfg.CacheDir
	if cache == "" {
		var err error
		if cache, err = DefaultCacheDir(); err != nil {
			return Info{}, err
		}
	}
	if info, err := Cached(cache); err == nil || !errors.Is(err, ErrNotBuilt) {
		return info, err
	}
	key := RecipeKey()
	if os.Geteuid() != 0 {
		return Info{}, fmt.Errorf("building the host image %s: mmdebstrap needs root; run as root (or with sudo)", key[:16])
	}
	for _, tool := range []string{"mmdebstrap", "mkfs.ext4", "mkfs.vfat", "mcopy", "sfdisk", "zstd"} {
		if _, err := exec.LookPath(tool); err != nil {
			return Info{}, fmt.Errorf("building the host image: %s is not installed; run scripts/deps.sh", tool)
		}
	}
	if err := os.MkdirAll(cache, 0o755); err != nil { //nolint:gosec // G301: the image is no secret
		return Info{}, fmt.Errorf("building the host image: %w", err)
	}
	tmp, err := os.MkdirTemp(cache, key[:16]+".building-")
	if err != nil {
		return Info{}, fmt.Errorf("building the host image: %w", err)
	}
	defer os.RemoveAll(tmp)
	src := filepath.Join(tmp, "recipe")
	work := filepath.Join(tmp, "work")
	out := filepath.Join(tmp, "out")
	if err := writeRecipe(src); err != nil {
		return Info{}, fmt.Errorf("building the host image: writing the recipe: %w", err)
	}
	for _, d := range []string{work, out} {
		if err := os.Mkdir(d, 0o755); err != nil { //nolint:gosec // G301: as above
			return Info{}, fmt.Errorf("building the host image: %w", err)
		}
	}
	log := cfg.Log
	if log == nil {
		log = io.Discard
	}
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(src, "build-image.sh"), work) //nolint:gosec // G204: our own embedded script
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	if cfg.Mirror != "" {
		cmd.Env = append(cmd.Env, "MIRROR="+cfg.Mirror)
	}
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return Info{}, fmt.Errorf("building the host image with build-image.sh: %w (its output went to the build log)", err)
	}

	disk := filepath.Join(work, "disk.raw")
	if err := installBIOSBootFiles(disk, filepath.Join(work, "boot.img"), filepath.Join(work, "core.img")); err != nil {
		return Info{}, fmt.Errorf("building the host image: %w", err)
	}
	fmt.Fprintf(log, "hostimage: compressing with zstd %s\n", zstdArgs[0])
	info, err := compress(ctx, disk, filepath.Join(out, ImageFile))
	if err != nil {
		return Info{}, fmt.Errorf("building the host image: compressing: %w", err)
	}
	info.Recipe = key
	info.RootUUID, info.Hostname = layoutValue("ROOT_UUID"), layoutValue("HOSTNAME")
	if err := writeResult(out, info, filepath.Join(work, PackagesFile)); err != nil {
		return Info{}, fmt.Errorf("building the host image: %w", err)
	}
	dir := filepath.Join(cache, key[:16])
	// A stale or half-written directory under the final name goes first.
	if err := os.RemoveAll(dir); err != nil {
		return Info{}, fmt.Errorf("building the host image: %w", err)
	}
	if err := os.Rename(out, dir); err != nil {
		return Info{}, fmt.Errorf("building the host image: %w", err)
	}
	info.Dir = dir
	return info, nil
}

// writeResult writes the description, the sha256sum file, the package list and, last, the
// mark that makes out a finished image.
func writeResult(out string, info Info, packages string) error {
	js, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	pk, err := os.ReadFile(packages)
	if err != nil {
		return fmt.Errorf("build-image.sh left no package list: %w", err)
	}
	files := []struct {
		name string
		data []byte
	}{
		{InfoFile, append(js, '\n')},
		{SumFile, []byte(info.SHA256 + "  " + ImageFile + "\n")},
		{PackagesFile, pk},
		{completeFile, []byte(info.Recipe + "\n")},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(out, f.name), f.data, 0o644); err != nil { //nolint:gosec // G306: no secret
			return err
		}
	}
	return nil
}

// layoutValue returns the value of NAME=value in the recipe's layout file.
func layoutValue(name string) string {
	b, _ := recipe.ReadFile("recipe/layout")
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte(name+"=")); ok {
			return string(v)
		}
	}
	return ""
}

// writeRecipe copies the embedded recipe into dir.
func writeRecipe(dir string) error {
	return fs.WalkDir(recipe, "recipe", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("recipe", filepath.FromSlash(p))
		dst := filepath.Join(dir, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755) //nolint:gosec // G301: the tree is copied into the image as is
		}
		b, err := recipe.ReadFile(path.Clean(p))
		if err != nil {
			return err
		}
		// embed keeps no modes: a script (#!) is executable.
		mode := os.FileMode(0o644)
		if bytes.HasPrefix(b, []byte("#!")) {
			mode = 0o755
		}
		return os.WriteFile(dst, b, mode)
	})
}
