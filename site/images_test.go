package site_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cairn-appliance/cairn/site"
	"github.com/cairn-appliance/cairn/site/sitetest"
)

func TestResolveImages(t *testing.T) {
	dir := t.TempDir()
	files := sitetest.Hall("nginx:1.27", "quay.io/prometheus/node-exporter:v1.8.2")
	files["roles/web.toml"] += "\n[[container]]\nname = \"web2\"\nimage = \"nginx:1.27\"\nports = [\"81:80\"]\n"
	sitetest.Write(t, dir, files)
	s, err := site.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	store := map[string]string{
		"docker.io/library/nginx:1.27":            "sha256:aaaa",
		"quay.io/prometheus/node-exporter:v1.8.2": "sha256:bbbb",
	}
	calls := 0
	resolve := func(img site.Image) (string, error) {
		calls++
		if d, ok := store[img.String()]; ok {
			return d, nil
		}
		return "", fmt.Errorf("image %s is not in the store", img)
	}
	got, err := s.ResolveImages(resolve)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[site.Image{Name: "docker.io/library/nginx", Tag: "1.27"}] != "sha256:aaaa" {
		t.Errorf("digests = %v", got)
	}
	if calls != 2 {
		t.Errorf("resolve called %d times for 2 distinct images, want 2", calls)
	}

	// Control: the store lacks nginx; both containers using it are reported at their image key.
	delete(store, "docker.io/library/nginx:1.27")
	_, err = s.ResolveImages(resolve)
	var errs site.Errors
	if !errors.As(err, &errs) || len(errs) != 2 {
		t.Fatalf("err = %v, want two positioned errors", err)
	}
	want := []string{"roles/web.toml:3:9: container[0].image: image docker.io/library/nginx:1.27 is not in the store",
		"roles/web.toml:8:9: container[1].image: image docker.io/library/nginx:1.27 is not in the store"}
	for i, e := range errs {
		if got := e.Error(); len(got) < len(want[i]) || got[:len(want[i])] != want[i] {
			t.Errorf("error %d = %q, want it to start with %q", i, got, want[i])
		}
	}
}
