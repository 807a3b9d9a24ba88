package site

import (
	"fmt"
	"slices"
	"strings"

	"github.com/cairn-appliance/cairn/site/tomlpos"
)

// ResolveImages resolves the image of every container of the site's roles with resolve, which
// returns the manifest digest (sha256:...) the image stands for, or why it has none (not in
// the store). It returns the digests by image, or Errors that point at the image key of every
// container whose image does not resolve, with resolve's reason as the message. Each image is
// resolved once, however many containers use it.
func (s *Site) ResolveImages(resolve func(Image) (string, error)) (map[Image]string, error) {
	digests := map[Image]string{}
	failed := map[Image]error{}
	var errs Errors
	for _, name := range tomlpos.SortedKeys(s.Roles) {
		r := s.Roles[name]
		for i, c := range r.Containers {
			if c.Image.IsZero() {
				continue
			}
			err, known := failed[c.Image]
			if _, ok := digests[c.Image]; !ok && !known {
				d, rerr := resolve(c.Image)
				if rerr == nil && d == "" {
					rerr = fmt.Errorf("image %s resolved to no digest", c.Image)
				}
				if rerr != nil {
					failed[c.Image], err = rerr, rerr
				} else {
					digests[c.Image] = d
				}
			}
			if err == nil {
				continue
			}
			hint := "build an appliance (or an update bundle) that carries it, or name an image it carries"
			if r.doc == nil {
				errs = append(errs, &Error{File: r.File, Key: tomlpos.Elem("container", i) + ".image", Message: err.Error(), Hint: hint})
				continue
			}
			errs = append(errs, r.doc.ErrAt(tomlpos.Elem("container", i)+".image", false, err.Error(), hint))
		}
	}
	if len(errs) > 0 {
		errs.Sort()
		return nil, errs
	}
	return digests, nil
}

// Images lists every distinct image the site's containers use, sorted.
func (s *Site) Images() []Image {
	var out []Image
	for _, r := range s.Roles {
		for _, c := range r.Containers {
			if !slices.Contains(out, c.Image) {
				out = append(out, c.Image)
			}
		}
	}
	slices.SortFunc(out, func(a, b Image) int { return strings.Compare(a.String(), b.String()) })
	return out
}
