package site

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds arbitrary site.toml, host and role files to Load: it must never panic, and
// whatever it rejects it must reject with positioned problems.
func FuzzLoad(f *testing.F) {
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		return string(b)
	}
	f.Add(read("../examples/site/site.toml"), read("../examples/site/hosts/mirror-01.toml"), read("../examples/site/roles/web.toml"))
	f.Add(read("../examples/site/site.toml"), read("../examples/site/hosts/web-01.toml"), read("../examples/site/roles/mirror.toml"))
	f.Add(read("testdata/types/site.toml"), read("testdata/types/hosts/b.toml"), read("testdata/containers/roles/app.toml"))
	f.Add(read("testdata/unknown-key/site.toml"), read("testdata/unknown-key/hosts/a.toml"), read("testdata/unknown-key/roles/web.toml"))
	f.Add(read("testdata/network/site.toml"), read("testdata/host/hosts/a.toml"), read("testdata/roles/roles/metrics.toml"))
	f.Add(minimalSite, "mac = \"52:54:00:00:00:01\"\nroles = [\"web\", \"web\"]\n[[partition]]\nlabel=\"x\"\n", "[[container]]\nname=\"web\"\nimage=\"nginx\"\n[[container.file]]\nsource=\"files/x.conf\"\ntarget=\"/x\"\n")
	f.Add("a.b.c = 1\n[a]\n", "[[x]]\n[[x.y]]\n[x.y.z]\n", "k = [[1], {a = [{}]}]\n")

	// One directory per worker process, rewritten by every input: a fresh t.TempDir per input
	// costs more than Load itself.
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, siteTOML, host, role string) {
		for name, content := range map[string]string{
			"site.toml": siteTOML, "hosts/a.toml": host, "roles/web.toml": role, "files/x.conf": "x",
		} {
			p := filepath.Join(dir, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		s, err := Load(dir)
		if err == nil {
			if s == nil || len(s.Hosts) != 1 || s.Hosts[0].Name == "" || s.Hosts[0].OS == "" {
				t.Fatalf("Load() = %+v with no error, want one complete host", s)
			}
			return
		}
		var errs Errors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("Load() error %T %v, want Errors", err, err)
		}
		for _, e := range errs {
			if e.File == "" || e.Line < 1 || e.Column < 1 || e.Message == "" {
				t.Fatalf("problem without position or message: %+v", e)
			}
		}
	})
}
