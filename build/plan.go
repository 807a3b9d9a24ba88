package build

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
)

// ErrNoSpace is returned (wrapped) when a build would not fit on its filesystems.
var ErrNoSpace = errors.New("build: not enough free space")

// Plan is what a build will carry and cost, known before any blob is fetched: image sizes come
// from their manifests, source sizes from the cache, the lock, the file or an HTTP HEAD.
type Plan struct {
	Artifacts []PlannedArtifact
	Total     int64 // bytes of every artifact, shared blobs counted each time
	Unique    int64 // bytes once shared blobs are stored once: what the store holds
	Fetch     int64 // bytes not yet in the cache: what the build downloads
	Unknown   int   // artifacts (and inputs) whose size could not be known in advance

	blobs map[string]int64 // sha256 (hex) -> size of every distinct blob planned

	Output, Cache Space
}

// PlannedArtifact is one line of a plan.
type PlannedArtifact struct {
	Kind      string // image, os_image, netboot, file
	Name      string // as build.toml names it
	Ref       string // what the store will carry it as (repository:tag or repository@digest)
	Platforms []string
	Size      int64 // -1: unknown until fetched
	Cached    int64 // bytes of it already in the cache
	// Input marks what the build fetches to make artifacts from (the packages of [agent]):
	// it goes into the cache, not into the store.
	Input bool
}

// Space is the free space of the filesystem a path lies on, and what the build needs there.
type Space struct {
	Path string
	Free uint64
	Need int64
	dev  uint64
}

// statfs reports the free bytes and the device of the filesystem holding path (or, when path
// does not exist yet, its nearest existing parent). Tests replace it.
var statfs = func(path string) (free, dev uint64, err error) {
	for p := path; ; p = filepath.Dir(p) {
		var st syscall.Statfs_t
		if err := syscall.Statfs(p, &st); err == nil {
			var fi syscall.Stat_t
			if err := syscall.Stat(p, &fi); err != nil {
				return 0, 0, err
			}
			return st.Bavail * uint64(st.Bsize), fi.Dev, nil //nolint:gosec // Bsize is positive
		} else if !errors.Is(err, os.ErrNotExist) || filepath.Dir(p) == p {
			return 0, 0, fmt.Errorf("checking free space of %s: %w", path, err)
		}
	}
}

// check fills in free space and refuses a build that cannot fit, with the numbers.
func (p *Plan) check(output, cache string) error {
	var err error
	p.Output = Space{Path: output, Need: p.Unique}
	if p.Output.Free, p.Output.dev, err = statfs(output); err != nil {
		return err
	}
	p.Cache = Space{Path: cache, Need: p.Fetch}
	if p.Cache.Free, p.Cache.dev, err = statfs(cache); err != nil {
		return err
	}
	if p.Output.dev == p.Cache.dev {
		// One filesystem holds both: downloads land in the cache and are copied into the store.
		need := p.Unique + p.Fetch
		if uint64(need) > p.Output.Free { //nolint:gosec // sizes are not negative
			return fmt.Errorf("%w: %s needs %s on the filesystem of %s and %s (the store, and the download cache), which has %s free; free some space, or put --cache or -o on another filesystem",
				ErrNoSpace, "the build", FormatBytes(need), output, cache, FormatBytes(int64(p.Output.Free))) //nolint:gosec // free space fits
		}
		return nil
	}
	for _, s := range []struct {
		Space
		what, flag string
	}{{p.Output, "the store", "-o"}, {p.Cache, "the download cache", "--cache"}} {
		if uint64(s.Need) > s.Free { //nolint:gosec // sizes are not negative
			return fmt.Errorf("%w: %s needs %s on the filesystem of %s, which has %s free; free some space or give another %s",
				ErrNoSpace, s.what, FormatBytes(s.Need), s.Path, FormatBytes(int64(s.Free)), s.flag) //nolint:gosec // free space fits
		}
	}
	return nil
}

// Print writes the plan as a table and a summary.
func (p *Plan) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "KIND\tNAME\tPLATFORMS\tSIZE\tCACHED\t")
	stored, inputs := 0, 0
	for _, a := range p.Artifacts {
		if a.Input {
			inputs++
		} else {
			stored++
		}
		plat := "-"
		if len(a.Platforms) > 0 {
			plat = strings.Join(a.Platforms, ",")
		}
		size := "?"
		if a.Size >= 0 {
			size = FormatBytes(a.Size)
		}
		kind := a.Kind
		if a.Input {
			kind += " (input)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", kind, a.Name, plat, size, FormatBytes(a.Cached))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	saved := p.Total - p.Unique
	fmt.Fprintf(w, "\n%d artifacts: %s, %s once shared blobs are stored once (%s saved); %s to download\n",
		stored, FormatBytes(p.Total), FormatBytes(p.Unique), FormatBytes(saved), FormatBytes(p.Fetch))
	if inputs > 0 {
		fmt.Fprintf(w, "%d input(s) to make artifacts from: kept in the cache, not stored\n", inputs)
	}
	if p.Unknown > 0 {
		fmt.Fprintf(w, "%d of unknown size are not counted: they are sized when fetched or made\n", p.Unknown)
	}
	if p.Output.Path != "" {
		fmt.Fprintf(w, "free space: %s at %s (needs %s), %s at %s (needs %s)\n",
			FormatBytes(int64(p.Output.Free)), p.Output.Path, FormatBytes(p.Output.Need), //nolint:gosec // free space fits
			FormatBytes(int64(p.Cache.Free)), p.Cache.Path, FormatBytes(p.Cache.Need)) //nolint:gosec // free space fits
	}
	return nil
}

// FormatBytes formats a byte count as people read it, with a binary unit: "1.5 MiB".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
