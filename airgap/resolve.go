package airgap

import (
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
)

// ResolveImage finds the container image the site names as repository repo (docker.io/library/nginx)
// with tag, or pinned by dgst when that is set: it returns the artifact whose manifest a host
// pulls. A pinned digest must be the artifact's own (the manifest or index the store keeps under
// that name); a tag must be the artifact's tag. When both are given the digest decides, as it
// does for podman.
func (ix *Index) ResolveImage(repo, tag string, dgst digest.Digest) (Artifact, bool) {
	for _, a := range ix.Artifacts {
		if a.Kind != KindImage || a.Repository != repo {
			continue
		}
		if dgst != "" {
			if a.Digest == dgst {
				return a, true
			}
			continue
		}
		if a.Tag == tag {
			return a, true
		}
	}
	return Artifact{}, false
}

// imagesOf lists what the index holds under repository repo, for an error message.
func (ix *Index) imagesOf(repo string) []string {
	var out []string
	for _, a := range ix.Artifacts {
		if a.Kind == KindImage && a.Repository == repo {
			out = append(out, a.Ref()+" ("+a.Digest.String()+")")
		}
	}
	return out
}

// ResolveImage resolves an image reference against the stores in order (see
// Index.ResolveImage); the first store that holds it wins. Its error wraps ErrNoArtifact and
// says what the stores hold under the same repository, so that a mistyped tag shows its fix.
func (s *Stores) ResolveImage(repo, tag string, dgst digest.Digest) (Artifact, error) {
	var have []string
	for _, dir := range s.dirs {
		ix, err := s.index(dir)
		if err != nil {
			return Artifact{}, err
		}
		if ix == nil {
			continue
		}
		if a, ok := ix.ResolveImage(repo, tag, dgst); ok {
			return a, nil
		}
		have = append(have, ix.imagesOf(repo)...)
	}
	want := repo + ":" + tag
	if dgst != "" {
		want = repo + "@" + dgst.String()
	}
	slices.Sort(have)
	have = slices.Compact(have)
	if len(have) == 0 {
		return Artifact{}, fmt.Errorf("%w: image %s is not in the appliance's store, nor is any image of %s; add it to build.toml and load an update bundle (cairn bundle load)", ErrNoArtifact, want, repo)
	}
	return Artifact{}, fmt.Errorf("%w: image %s is not in the appliance's store, which holds %s; use one of those or add it to build.toml and load an update bundle", ErrNoArtifact, want, strings.Join(have, ", "))
}
