package appliance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"time"
)

// The files of an appliance base, as build/iso expects them in a base directory.
const (
	KernelFile = "vmlinuz"
	InitrdFile = "initrd.img"
	RootFile   = "filesystem.squashfs"
)

// BaseFiles lists the files every base directory holds.
var BaseFiles = []string{KernelFile, InitrdFile, RootFile}

// completeFile marks a cached base as finished; a directory without it is ignored.
const completeFile = "recipe.sha256"

//go:embed all:recipe
var recipe embed.FS

// RecipeKey returns the hash that names a base built from this recipe: the sha256 over every
// recipe file's path, mode class and content, so any edit to the packages, the overlay or the
// build script gives a new key.
func RecipeKey() string { return TreeKey(recipe, "recipe", "") }

// TreeKey is the sha256 (hex) of prefix and then of every file under dir in fsys, in path
// order, each as its path, its length and its content: the name of what a recipe tree builds,
// which any edit to the tree changes.
func TreeKey(fsys fs.FS, dir, prefix string) string {
	h := sha256.New()
	h.Write([]byte(prefix))
	var paths []string
	_ = fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			paths = append(paths, p)
		}
		return err
	})
	sort.Strings(paths)
	for _, p := range paths {
		b, _ := fs.ReadFile(fsys, p)
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// CacheEnv names the environment variable that, when set, overrides DefaultCacheDir.
const CacheEnv = "CAIRN_APPLIANCE_CACHE"

// DefaultCacheDir is where bases are kept unless told otherwise: $CAIRN_APPLIANCE_CACHE, else
// cairn/appliance-base under the user cache directory (~/.cache on Linux).
func DefaultCacheDir() (string, error) {
	if d := os.Getenv(CacheEnv); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the appliance base cache: %w; give a cache directory", err)
	}
	return filepath.Join(d, "cairn", "appliance-base"), nil
}

// CheckBase reports whether dir holds a usable base: vmlinuz, initrd.img and filesystem.squashfs,
// none of them empty.
func CheckBase(dir string) error {
	var missing []string
	for _, f := range BaseFiles {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("appliance base %s: missing or empty %v; expected %v (make appliance-base builds one)", dir, missing, BaseFiles)
	}
	return nil
}

// BuildConfig says where bases are cached and how a missing one is built.
type BuildConfig struct {
	// CacheDir holds one directory per recipe key. Empty means DefaultCacheDir.
	CacheDir string
	// Mirror is the Debian mirror mmdebstrap installs from. Empty means deb.debian.org.
	Mirror string
	// Log receives mmdebstrap's output while a base is built. Nil discards it.
	Log io.Writer
}

// Build returns the directory of the base for this recipe, building it with mmdebstrap first
// when the cache does not hold it yet. A cached base costs nothing: its directory is returned
// as is. Building needs root (mmdebstrap installs a kernel and makes an initramfs) and takes
// minutes; the base is written beside its final place and renamed into it only when complete,
// so an interrupted build leaves nothing that a later call would take for a base.
func Build(ctx context.Context, cfg BuildConfig) (string, error) {
	cache := cfg.CacheDir
	if cache == "" {
		var err error
		if cache, err = DefaultCacheDir(); err != nil {
			return "", err
		}
	}
	key := RecipeKey()
	dir := filepath.Join(cache, key[:16])
	if b, err := os.ReadFile(filepath.Join(dir, completeFile)); err == nil && string(bytes.TrimSpace(b)) == key {
		if err := CheckBase(dir); err != nil {
			return "", fmt.Errorf("cached %w; remove %s to rebuild it", err, dir)
		}
		return dir, nil
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("building the appliance base %s: mmdebstrap needs root; run as root (or with sudo), or point at a prebuilt base", key[:16])
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return "", errors.New("building the appliance base: mmdebstrap is not installed; run scripts/deps.sh")
	}
	if err := os.MkdirAll(cache, 0o755); err != nil { //nolint:gosec // G301: a base is mastered onto media that everyone reads
		return "", fmt.Errorf("building the appliance base: %w", err)
	}
	tmp, err := os.MkdirTemp(cache, key[:16]+".building-")
	if err != nil {
		return "", fmt.Errorf("building the appliance base: %w", err)
	}
	defer os.RemoveAll(tmp)
	src := filepath.Join(tmp, "recipe")
	out := filepath.Join(tmp, "out")
	if err := writeRecipe(src); err != nil {
		return "", fmt.Errorf("building the appliance base: writing the recipe: %w", err)
	}
	if err := os.Mkdir(out, 0o755); err != nil { //nolint:gosec // G301: as above
		return "", fmt.Errorf("building the appliance base: %w", err)
	}
	log := cfg.Log
	if log == nil {
		log = io.Discard
	}
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(src, "build-base.sh"), out) //nolint:gosec // G204: our own embedded script
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = os.Environ()
	if cfg.Mirror != "" {
		cmd.Env = append(cmd.Env, "MIRROR="+cfg.Mirror)
	}
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building the appliance base with mmdebstrap: %w (its output went to the build log)", err)
	}
	if err := CheckBase(out); err != nil {
		return "", fmt.Errorf("building the appliance base: the recipe ran but left no base: %w", err)
	}
	if err := os.WriteFile(filepath.Join(out, completeFile), []byte(key+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("building the appliance base: %w", err)
	}
	// A stale or half-written directory under the final name goes first.
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("building the appliance base: %w", err)
	}
	if err := os.Rename(out, dir); err != nil {
		return "", fmt.Errorf("building the appliance base: %w", err)
	}
	return dir, nil
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
			return os.MkdirAll(dst, 0o755) //nolint:gosec // G301: mmdebstrap runs the recipe as root
		}
		b, err := recipe.ReadFile(path.Clean(p))
		if err != nil {
			return err
		}
		// embed keeps no modes: a script (#!) is executable, as a systemd generator must be.
		mode := os.FileMode(0o644)
		if bytes.HasPrefix(b, []byte("#!")) {
			mode = 0o755
		}
		return os.WriteFile(dst, b, mode)
	})
}
