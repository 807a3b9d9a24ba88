package quadlet

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cairn-appliance/cairn/agent/api"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func digest(n int) string { return fmt.Sprintf("sha256:%064x", n) }

func file(target, content string) api.File {
	sum := sha256.Sum256([]byte(content))
	return api.File{Target: target, SHA256: hex.EncodeToString(sum[:]), Data: []byte(content)}
}

// sample is a Desired that uses every field of a container, with values that need quoting.
func sample() *api.Desired {
	return &api.Desired{
		Host:       "host-zz9",
		Generation: 7,
		Registry:   "10.20.0.1:5000",
		Containers: []api.Container{
			{
				Name:       "web",
				Role:       "frontend",
				Image:      "docker.io/library/nginx:1.27",
				Digest:     digest(1),
				Entrypoint: []string{"/docker-entrypoint.sh", "--mode", "a b"},
				Command:    []string{"nginx", "-g", "daemon off;", `say "hi"`, `C:\dir\`, "50%", "$HOME", "${PATH}", "it's", "grüße", "\\;"},
				Env: map[string]string{
					"TZ":       "Europe/Berlin",
					"GREETING": `hello "world"`,
					"PERCENT":  "100%",
					"DOLLAR":   "$1 and ${X}",
					"EMPTY":    "",
					"SPACES":   "  lead and trail  ",
					"QUOTE":    "'single'",
					"BACKSL":   `a\b\`,
					"EQUALS":   "k=v=w",
				},
				Ports:   []string{"8080:80/tcp", "127.0.0.1:8443:443/tcp", "[::1]:9000-9001:9000-9001/udp", "5353:53"},
				Volumes: []string{"/srv/web/data:/data", "web-cache:/var/cache/nginx:rw,noexec", "/srv/logs:/var/log/nginx:ro"},
				Network: "bridge",
				User:    "101:101",
				Restart: "always",
				Health: &api.Health{
					Command:     []string{"curl", "-fsS", "http://localhost/health?x=1&y=%7E", "-H", `X-Check: "yes"`},
					Interval:    "15s",
					Timeout:     "5s",
					Retries:     4,
					StartPeriod: "1m30s",
				},
				Files: []api.File{
					file("/etc/nginx/nginx.conf", "worker_processes 1;\n"),
					file("/etc/nginx/conf.d/site.conf", "server { listen 80; }\n"),
				},
			},
			{
				Name:    "cache",
				Role:    "frontend",
				Image:   "quay.io/example/redis:7@" + digest(2),
				Digest:  digest(2),
				Command: []string{"redis-server", "--save", "60 1"},
				Network: "host",
				Restart: "on-failure",
				Health:  &api.Health{Command: []string{"/usr/local/bin/check"}},
			},
			{
				Name:    "batch.job",
				Role:    "jobs",
				Image:   "registry.example.com/tools/batch:v1",
				Digest:  digest(3),
				Network: "none",
				Restart: "no",
				Env:     map[string]string{"ONE": "1"},
				Files:   []api.File{file("/config.json", `{"a": 1}`)},
			},
		},
	}
}

func render(t *testing.T, d *api.Desired) *Rendered {
	t.Helper()
	r, err := Render(d, DefaultLayout())
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return r
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to write the golden files)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; got:\n%s\nwant:\n%s", name, got, want)
	}
}

// configListing lists the config files: path and sha256, one a line.
func configListing(cs []Config) []byte {
	var b bytes.Buffer
	for _, c := range cs {
		fmt.Fprintf(&b, "%s %x\n", c.Path, sha256.Sum256(c.Data))
	}
	return b.Bytes()
}

func TestGolden(t *testing.T) {
	r := render(t, sample())
	var names []string
	for _, u := range r.Units {
		names = append(names, u.Name)
		golden(t, "sample/"+u.Name, u.Data)
	}
	if want := []string{"cairn-batch.job.container", "cairn-cache.container", "cairn-web.container"}; !slices.Equal(names, want) {
		t.Errorf("units = %q, want %q (sorted by name)", names, want)
	}
	golden(t, "sample/50-cairn.conf", r.RegistriesConf)
	golden(t, "sample/configs.txt", configListing(r.Configs))

	// Every golden file is one the render made: none is left over from an older render.
	entries, err := os.ReadDir("testdata/sample")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !slices.Contains(names, e.Name()) && e.Name() != "50-cairn.conf" && e.Name() != "configs.txt" {
			t.Errorf("testdata/sample/%s is not rendered any more: remove it", e.Name())
		}
	}
}

func TestUnitFields(t *testing.T) {
	r := render(t, sample())
	byName := map[string]Unit{}
	for _, u := range r.Units {
		byName[u.Container] = u
	}
	web := byName["web"]
	if web.Name != "cairn-web.container" || web.Service != "cairn-web.service" || web.Name != UnitName("web") || web.Service != ServiceName("web") {
		t.Errorf("web unit is %s / %s, want cairn-web.container / cairn-web.service", web.Name, web.Service)
	}
	hash := ConfigHash(sample().Containers[0].Files)
	if want := "/var/lib/cairn/config/web-" + hash; web.ConfigDir != want {
		t.Errorf("web ConfigDir = %q, want %q", web.ConfigDir, want)
	}
	if byName["cache"].ConfigDir != "" {
		t.Errorf("cache ConfigDir = %q, want none (it has no files)", byName["cache"].ConfigDir)
	}
	for _, c := range r.Configs {
		u := byName[strings.SplitN(strings.TrimPrefix(c.Path, "/var/lib/cairn/config/"), "-", 2)[0]]
		if !strings.HasPrefix(c.Path, u.ConfigDir+"/") {
			t.Errorf("config %s is not under its unit's ConfigDir %s", c.Path, u.ConfigDir)
		}
		if !bytes.Contains(web.Data, []byte(c.Path)) && !bytes.Contains(byName["batch.job"].Data, []byte(c.Path)) {
			t.Errorf("config %s is mounted by no unit", c.Path)
		}
	}
	if !slices.IsSortedFunc(r.Configs, func(a, b Config) int { return strings.Compare(a.Path, b.Path) }) {
		t.Error("configs are not sorted by path")
	}
	for _, want := range []string{
		"Environment=CAIRN_CONFIG_HASH=" + hash + "\n",
		"Volume=/var/lib/cairn/config/web-" + hash + "/etc/nginx/nginx.conf:/etc/nginx/nginx.conf:ro,Z\n",
		"Label=" + OwnerLabel + "=cairn\n",
		"Notify=healthy\n",
		"Pull=never\n",
		"Image=docker.io/library/nginx@" + digest(1) + "\n",
	} {
		if !bytes.Contains(web.Data, []byte(want)) {
			t.Errorf("web unit lacks %q", want)
		}
	}
	for _, u := range r.Units {
		if bytes.Contains(u.Data, []byte("host-zz9")) {
			t.Errorf("%s names the host", u.Name)
		}
	}
}

// shuffled is d with its containers and files in another order, its environment
// maps rebuilt in another insertion order, and another generation.
func shuffled(d *api.Desired, rng *rand.Rand) *api.Desired {
	s := *d
	s.Generation = d.Generation + 1 + rng.Int64N(1000)
	s.Containers = slices.Clone(d.Containers)
	rng.Shuffle(len(s.Containers), func(i, j int) { s.Containers[i], s.Containers[j] = s.Containers[j], s.Containers[i] })
	for i := range s.Containers {
		c := &s.Containers[i]
		c.Files = slices.Clone(c.Files)
		rng.Shuffle(len(c.Files), func(i, j int) { c.Files[i], c.Files[j] = c.Files[j], c.Files[i] })
		if c.Env != nil {
			keys := slices.Collect(maps.Keys(c.Env))
			rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
			env := make(map[string]string, len(keys))
			for _, k := range keys {
				env[k] = c.Env[k]
			}
			c.Env = env
		}
	}
	return &s
}

func TestDeterministic(t *testing.T) {
	want := render(t, sample())
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 50 {
		got := render(t, shuffled(sample(), rng))
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("render %d of the same containers in another order differs", i)
		}
	}

	// Control: the comparison sees a change of one environment value.
	d := shuffled(sample(), rng)
	for i := range d.Containers {
		if d.Containers[i].Name == "batch.job" {
			d.Containers[i].Env = map[string]string{"ONE": "2"}
		}
	}
	if reflect.DeepEqual(render(t, d), want) {
		t.Fatal("a changed environment value renders the same: the comparison is blind")
	}
}

// unitsByName maps container names to unit bytes.
func unitsByName(r *Rendered) map[string]string {
	m := map[string]string{}
	for _, u := range r.Units {
		m[u.Container] = string(u.Data)
	}
	return m
}

func TestChangeOnlyItsUnit(t *testing.T) {
	before := render(t, sample())
	for _, tc := range []struct {
		name    string
		change  func(c *api.Container)
		changes string // the container whose unit changes
	}{
		{"file content", func(c *api.Container) {
			if c.Name == "web" {
				c.Files = slices.Clone(c.Files)
				c.Files[0] = file(c.Files[0].Target, "worker_processes 2;\n")
			}
		}, "web"},
		{"file target", func(c *api.Container) {
			if c.Name == "batch.job" {
				c.Files = []api.File{file("/etc/config.json", string(c.Files[0].Data))}
			}
		}, "batch.job"},
		{"digest", func(c *api.Container) {
			if c.Name == "cache" {
				c.Image, c.Digest = "quay.io/example/redis:7", digest(9)
			}
		}, "cache"},
		{"env", func(c *api.Container) {
			if c.Name == "web" {
				c.Env = maps.Clone(c.Env)
				c.Env["TZ"] = "UTC"
			}
		}, "web"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := sample()
			d.Generation++
			for i := range d.Containers {
				tc.change(&d.Containers[i])
			}
			after := render(t, d)
			b, a := unitsByName(before), unitsByName(after)
			for name := range b {
				if changed := a[name] != b[name]; changed != (name == tc.changes) {
					t.Errorf("unit of %s changed = %v, want %v", name, changed, name == tc.changes)
				}
			}
			// Only the changed container's configs move; the others keep their paths.
			for _, c := range before.Configs {
				moved := !slices.ContainsFunc(after.Configs, func(x Config) bool { return x.Path == c.Path && bytes.Equal(x.Data, c.Data) })
				owner := strings.SplitN(strings.TrimPrefix(c.Path, "/var/lib/cairn/config/"), "-", 2)[0]
				if moved && owner != tc.changes {
					t.Errorf("config %s of an unchanged container moved", c.Path)
				}
			}
		})
	}
}

func TestFileContentChangesHash(t *testing.T) {
	a := []api.File{file("/a", "1"), file("/b", "2")}
	b := []api.File{file("/a", "1"), file("/b", "3")}
	c := []api.File{file("/b", "2"), file("/a", "1")}
	if ConfigHash(a) == ConfigHash(b) {
		t.Error("ConfigHash is the same for different content")
	}
	if ConfigHash(a) != ConfigHash(c) {
		t.Error("ConfigHash depends on the order of the files")
	}
	if h := ConfigHash(a); len(h) != 16 || strings.Trim(h, "0123456789abcdef") != "" {
		t.Errorf("ConfigHash = %q, want 16 lowercase hex digits", h)
	}
	// Moving content from one target to another is a change too.
	d := []api.File{file("/a", "2"), file("/b", "1")}
	if ConfigHash(a) == ConfigHash(d) {
		t.Error("ConfigHash is the same when two files swap contents")
	}
}

func TestRefused(t *testing.T) {
	// Control: the sample itself renders.
	render(t, sample())

	edit := func(name string, f func(c *api.Container)) func(d *api.Desired) {
		return func(d *api.Desired) {
			for i := range d.Containers {
				if d.Containers[i].Name == name {
					f(&d.Containers[i])
				}
			}
		}
	}
	for _, tc := range []struct {
		name string
		edit func(d *api.Desired)
		want []string // in the error, besides the container's name when there is one
	}{
		{"newline in env value", edit("web", func(c *api.Container) { c.Env = map[string]string{"A": "line1\nline2"} }), []string{`container "web"`, `env["A"]`, "control character"}},
		{"bad env name", edit("web", func(c *api.Container) { c.Env = map[string]string{"1A": "x"} }), []string{`env["1A"]`, "not an environment variable name"}},
		{"reserved env", edit("web", func(c *api.Container) { c.Env = map[string]string{ConfigHashEnv: "x"} }), []string{`env["CAIRN_CONFIG_HASH"]`, "set by cairn"}},
		{"relative file target", edit("web", func(c *api.Container) { c.Files = []api.File{file("etc/x.conf", "x")} }), []string{`container "web"`, "files[0].target", "absolute"}},
		{"unclean file target", edit("web", func(c *api.Container) { c.Files = []api.File{file("/etc/../x", "x")} }), []string{"files[0].target", "clean"}},
		{"colon in file target", edit("web", func(c *api.Container) { c.Files = []api.File{file("/etc/a:b", "x")} }), []string{"files[0].target", "':'"}},
		{"space in file target", edit("web", func(c *api.Container) { c.Files = []api.File{file("/etc/a b", "x")} }), []string{"files[0].target", "whitespace"}},
		{"file twice", edit("web", func(c *api.Container) { c.Files = []api.File{file("/a", "x"), file("/a", "y")} }), []string{"files[1].target", "another file"}},
		{"file hash mismatch", edit("web", func(c *api.Container) {
			f := file("/a", "x")
			f.Data = []byte("y")
			c.Files = []api.File{f}
		}), []string{"files[0].sha256", "not the sha256"}},
		{"empty command argument", edit("web", func(c *api.Container) { c.Command = []string{"echo", "", "x"} }), []string{"command[1]", "empty"}},
		{"lone semicolon", edit("web", func(c *api.Container) { c.Command = []string{"find", "-exec", "rm", "{}", ";"} }), []string{"command[4]", "';'"}},
		{"tab in entrypoint", edit("web", func(c *api.Container) { c.Entrypoint = []string{"a\tb"} }), []string{"entrypoint[0]", "control character"}},
		{"invalid UTF-8", edit("web", func(c *api.Container) { c.Command = []string{"\xff"} }), []string{"command[0]", "UTF-8"}},
		{"bad network", edit("web", func(c *api.Container) { c.Network = "macvlan" }), []string{"network", "bridge, host or none"}},
		{"port with host network", edit("web", func(c *api.Container) { c.Network = "host" }), []string{"ports[0]", "network \"host\""}},
		{"bad port", edit("web", func(c *api.Container) { c.Ports = []string{"80"} }), []string{"ports[0]", "is not a port"}},
		{"space in volume", edit("web", func(c *api.Container) { c.Volumes = []string{"/srv/my data:/data"} }), []string{"volumes[0]", "SOURCE:TARGET"}},
		{"relative volume target", edit("web", func(c *api.Container) { c.Volumes = []string{"/srv:data"} }), []string{"volumes[0]", "target"}},
		{"volume named like a unit", edit("web", func(c *api.Container) { c.Volumes = []string{"data.volume:/data"} }), []string{"volumes[0]", "quadlet unit"}},
		{"bad user", edit("web", func(c *api.Container) { c.User = "root; rm" }), []string{"user", "USER:GROUP"}},
		{"bad restart", edit("web", func(c *api.Container) { c.Restart = "sometimes" }), []string{"restart", "Restart= policy"}},
		{"health keyword", edit("web", func(c *api.Container) { c.Health.Command = []string{"CMD-SHELL", "curl x"} }), []string{"health.command[0]", "keyword"}},
		{"one-word health with space", edit("cache", func(c *api.Container) { c.Health.Command = []string{"check all"} }), []string{`container "cache"`, "health.command[0]", "one-word"}},
		{"bad health interval", edit("web", func(c *api.Container) { c.Health.Interval = "often" }), []string{"health.interval", "duration"}},
		{"zero health timeout", edit("web", func(c *api.Container) { c.Health.Timeout = "0s" }), []string{"health.timeout", "at least 1s"}},
		{"bad digest", edit("web", func(c *api.Container) { c.Digest = "sha256:abc" }), []string{"digest", "not a sha256 digest"}},
		{"image digest differs", edit("cache", func(c *api.Container) { c.Digest = digest(5) }), []string{"image", "names digest"}},
		{"registry with a port", edit("web", func(c *api.Container) { c.Image = "registry.example.com:5000/x:1" }), []string{"image", "registry.example.com:5000", "no port"}},
		{"bad image", edit("web", func(c *api.Container) { c.Image = "Not An Image" }), []string{"image", "not an image reference"}},
		{"bad name", edit("web", func(c *api.Container) { c.Name = "web@1" }), []string{"name", "not a container name"}},
		{"bad role", edit("web", func(c *api.Container) { c.Role = "front end" }), []string{"role", "not a role name"}},
		{"duplicate name", func(d *api.Desired) { d.Containers = append(d.Containers, d.Containers[1]) }, []string{`container "cache"`, "name", "two containers"}},
		{"bad registry", func(d *api.Desired) { d.Registry = "http://10.0.0.1:5000" }, []string{"registry", "not a registry address"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := sample()
			tc.edit(d)
			r, err := Render(d, DefaultLayout())
			if err == nil {
				t.Fatalf("Render = %d units, want an error", len(r.Units))
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Render error %q does not say %q", err, w)
				}
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("Render error %q is not a *FieldError", err)
			}
		})
	}
}

func TestRefusedLayout(t *testing.T) {
	for _, l := range []Layout{{UnitDir: "etc/x", ConfigDir: "/var/lib/cairn/config"}, {UnitDir: "/etc/x", ConfigDir: "/var/lib/my config"}, {UnitDir: "/etc/x/", ConfigDir: "/c"}} {
		if _, err := Render(sample(), l); err == nil {
			t.Errorf("Render with layout %+v succeeded, want an error", l)
		}
	}
	l := Layout{UnitDir: "/etc/x", ConfigDir: "/srv/cfg"}
	r, err := Render(sample(), l)
	if err != nil {
		t.Fatalf("Render with layout %+v: %v", l, err)
	}
	for _, c := range r.Configs {
		if !strings.HasPrefix(c.Path, "/srv/cfg/") {
			t.Errorf("config %s is not under the layout's ConfigDir", c.Path)
		}
	}
}

func TestEmpty(t *testing.T) {
	r, err := Render(&api.Desired{Host: "h", Generation: 1}, DefaultLayout())
	if err != nil {
		t.Fatalf("Render of no containers: %v", err)
	}
	if len(r.Units) != 0 || len(r.Configs) != 0 {
		t.Errorf("Render of no containers = %d units, %d configs", len(r.Units), len(r.Configs))
	}
	if !bytes.Contains(r.RegistriesConf, []byte("short-name-mode = \"enforcing\"")) || bytes.Contains(r.RegistriesConf, []byte("[[registry]]")) {
		t.Errorf("registries.conf of no containers:\n%s", r.RegistriesConf)
	}
}

func TestStartTimeout(t *testing.T) {
	for _, tc := range []struct {
		h    *healthTimes
		want string
	}{
		{nil, "5m0s"},
		{&healthTimes{interval: 30e9, timeout: 30e9, retries: 3}, "5m0s"},                      // 4 × 60 s = 4 min: the floor
		{&healthTimes{interval: 60e9, timeout: 10e9, retries: 5, start: 120e9}, "9m0s"},        // 2 min + 6 × 70 s
		{&healthTimes{interval: 10e9, timeout: 5e9, retries: 2, start: 600e9 + 5e8}, "10m46s"}, // 10 min 0.5 s + 45 s, rounded up
	} {
		if got := startTimeout(tc.h).String(); got != tc.want {
			t.Errorf("startTimeout(%+v) = %s, want %s", tc.h, got, tc.want)
		}
	}
}
