package plan

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-appliance/cairn/site/sitetest"

	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/site"
)

const siteTOML = `[site]
name = "lab"
%s
[network]
interface = "eth1"
cidr = "10.0.0.0/24"
appliance_ip = "10.0.0.1"
dhcp = "proxy"
[defaults]
os = "debian-12"
disk = "first-nonremovable"
`

// load writes a site of hosts (name -> extra TOML) with one role "web" and loads it.
func load(t *testing.T, siteExtra, image string, hosts map[string]string) *site.Site {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"site.toml":      fmt.Sprintf(siteTOML, siteExtra),
		"roles/web.toml": fmt.Sprintf("[[container]]\nname = \"web\"\nimage = %q\nports = [\"80:80\"]\n", image),
	}
	for name, extra := range hosts {
		files["hosts/"+name+".toml"] = fmt.Sprintf("mac = \"52:54:00:00:00:%02x\"\n%s\n", name[0]-'a'+1, extra)
	}
	sitetest.Write(t, dir, files)
	s, err := site.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// applied records s as if the daemon had applied all of it.
func applied(t *testing.T, s *site.Site) []state.Host {
	t.Helper()
	d, err := Desire(s)
	if err != nil {
		t.Fatal(err)
	}
	var hosts []state.Host
	for _, name := range sortedNames(d) {
		h := d[name]
		hosts = append(hosts, state.Host{Name: name, MAC: h.Host.MAC.String(), Phase: state.Ready, Provision: h.Host.Provision, Spec: h.Spec, Containers: h.Containers})
	}
	return hosts
}

func summary(p *Plan) string {
	var parts []string
	for _, it := range p.Items {
		s := it.Host + ":" + string(it.Action)
		if it.Destructive {
			s += "!"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func TestCompute(t *testing.T) {
	three := map[string]string{"a": `roles = ["web"]`, "b": `roles = ["web"]`, "c": `roles = ["web"]`}
	base := load(t, "", "nginx:1.27", three)
	tests := []struct {
		name     string
		site     *site.Site
		recorded []state.Host
		want     string
		refused  bool
		detail   string
	}{
		{"empty state: all new", base, nil, "a:add b:add c:add", false, "52:54:00"},
		{"nothing changed", base, applied(t, base), "", false, ""},
		{"provision raised", load(t, "", "nginx:1.27", map[string]string{"a": "roles = [\"web\"]\nprovision = 1", "b": `roles = ["web"]`, "c": `roles = ["web"]`}),
			applied(t, base), "a:reprovision!", false, "provision 0 → 1"},
		{"address changed", load(t, "", "nginx:1.27", map[string]string{"a": "roles = [\"web\"]\nip = \"10.0.0.9\"", "b": `roles = ["web"]`, "c": `roles = ["web"]`}),
			applied(t, base), "a:change", false, `ip: (none) → "10.0.0.9"`},
		{"image changed", load(t, "", "nginx:1.28", three), applied(t, base), "a:containers b:containers c:containers", false, `image: "docker.io/library/nginx:1.27" → "docker.io/library/nginx:1.28"`},
		{"one host gone", load(t, "", "nginx:1.27", map[string]string{"a": `roles = ["web"]`, "b": `roles = ["web"]`}),
			applied(t, base), "c:remove!", false, "leaves the site"},
		{"most hosts gone", load(t, "", "nginx:1.27", map[string]string{"a": `roles = ["web"]`}),
			applied(t, base), "b:remove! c:remove!", true, ""},
		{"most hosts gone, allowed", load(t, "allow_mass_removal = true", "nginx:1.27", map[string]string{"a": `roles = ["web"]`}),
			applied(t, base), "b:remove! c:remove!", false, ""},
		{"every container gone", load(t, "", "nginx:1.27", map[string]string{"a": "", "b": "", "c": ""}),
			applied(t, base), "a:containers b:containers c:containers", true, "- container web"},
		{"discovered machine adopted", base, []state.Host{{Name: "discovered-525400000001", MAC: "52:54:00:00:00:01", Phase: state.Discovered}},
			"a:add b:add c:add", false, "adopts the discovered machine discovered-525400000001"},
		// A MAC recorded in another form is the same MAC.
		{"discovered machine adopted, MAC in another form", base, []state.Host{{Name: "discovered-x", MAC: "52-54-00-00-00-01", Phase: state.Discovered}},
			"a:add b:add c:add", false, "adopts the discovered machine discovered-x"},
		{"discovered machine adopted, dotted MAC", base, []state.Host{{Name: "discovered-y", MAC: "5254.0000.0001", Phase: state.Discovered}},
			"a:add b:add c:add", false, "adopts the discovered machine discovered-y"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Compute(tt.site, tt.recorded)
			if err != nil {
				t.Fatal(err)
			}
			if got := summary(p); got != tt.want {
				t.Errorf("plan = %q, want %q", got, tt.want)
			}
			if (p.Refused != "") != tt.refused {
				t.Errorf("refused = %q, want refused %v", p.Refused, tt.refused)
			}
			var out strings.Builder
			if err := p.Print(&out); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), tt.detail) {
				t.Errorf("printed plan lacks %q:\n%s", tt.detail, out.String())
			}
			if tt.refused && !strings.Contains(out.String(), "allow_mass_removal") {
				t.Errorf("a refused plan does not say how to allow it:\n%s", out.String())
			}
		})
	}
}

// TestMemoDesiresWhatDesireDoes loads a site again and again through a site.Loader while its
// hosts, defaults and role change, and checks that a Memo gives what a fresh Desire does.
func TestMemoDesiresWhatDesireDoes(t *testing.T) {
	dir := t.TempDir()
	write := func(p, c string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("site.toml", fmt.Sprintf(siteTOML, ""))
	write("roles/web.toml", "[[container]]\nname = \"web\"\nimage = \"docker.io/library/nginx:1.27\"\n")
	host := func(i, v int) string {
		roles := []string{`[]`, `["web"]`}[v%2]
		return fmt.Sprintf("mac = \"52:54:00:00:00:%02x\"\nroles = %s\n[labels]\nv = \"%d\"\n", i, roles, v)
	}
	for i := range 10 {
		write(fmt.Sprintf("hosts/h%d.toml", i), host(i, 0))
	}
	l := site.NewLoader(dir)
	var m Memo
	for round := range 30 {
		var changed []string
		switch round % 5 {
		case 3:
			write("site.toml", fmt.Sprintf(siteTOML, "")+fmt.Sprintf("timezone = %q\n", []string{"UTC", "Europe/Paris"}[round%2]))
		case 4:
			write("roles/web.toml", fmt.Sprintf("[[container]]\nname = \"web\"\nimage = \"docker.io/library/nginx:1.%d\"\n", round))
		default:
			p := fmt.Sprintf("hosts/h%d.toml", round%10)
			write(p, host(round%10, round))
			changed = append(changed, p)
		}
		l.Changed(changed...)
		s, err := l.Load()
		if err != nil {
			t.Fatal(err)
		}
		got, err := m.Desire(s)
		if err != nil {
			t.Fatal(err)
		}
		want, err := Desire(s)
		if err != nil {
			t.Fatal(err)
		}
		for name, w := range want {
			g := got[name]
			if string(g.Spec) != string(w.Spec) || string(g.Containers) != string(w.Containers) || g.Host != w.Host {
				t.Fatalf("round %d, host %s: memo gives %s %s, Desire %s %s", round, name, g.Spec, g.Containers, w.Spec, w.Containers)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("round %d: memo gives %d hosts, Desire %d", round, len(got), len(want))
		}
	}
}

// TestDigests: with a resolver, a tag that moves to another digest changes the containers of
// the hosts that run it; a plan made without one (cairn site plan) does not see digests; an
// image the resolver lacks fails with its position.
func TestDigests(t *testing.T) {
	s := load(t, "", "nginx:1.27", map[string]string{"a": "roles = [\"web\"]", "b": ""})
	store := map[string]string{"docker.io/library/nginx:1.27": "sha256:1111"}
	resolve := func(img site.Image) (string, error) {
		if d, ok := store[img.String()]; ok {
			return d, nil
		}
		return "", fmt.Errorf("image %s is not in the store", img)
	}
	m := &Memo{Resolve: resolve}
	d, err := m.Desire(s)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(d["a"].Digests); got != `{"web":"sha256:1111"}` || !d["a"].Resolved {
		t.Fatalf("digests of a = %s (resolved %v)", got, d["a"].Resolved)
	}
	if d["b"].Digests != nil {
		t.Errorf("b runs nothing, yet has digests %s", d["b"].Digests)
	}
	var recorded []state.Host
	for _, name := range sortedNames(d) {
		h := d[name]
		recorded = append(recorded, state.Host{Name: name, MAC: h.Host.MAC.String(), Phase: state.Ready, Spec: h.Spec, Containers: h.Containers, Digests: h.Digests})
	}
	if p := Diff(s, d, recorded); !p.Empty() {
		t.Fatalf("the same site and store plan changes: %+v", p.Items)
	}

	store["docker.io/library/nginx:1.27"] = "sha256:2222" // the tag moved (an update bundle)
	d, err = m.Desire(s)
	if err != nil {
		t.Fatal(err)
	}
	p := Diff(s, d, recorded)
	if len(p.Items) != 1 || p.Items[0].Host != "a" || p.Items[0].Action != Containers ||
		!strings.Contains(strings.Join(p.Items[0].Details, "\n"), "~ container web: image digest sha256:1111 → sha256:2222") {
		t.Errorf("a moved tag plans %+v, want host a's containers to change", p.Items)
	}
	offline, err := Desire(s) // no resolver: digests are not compared
	if err != nil {
		t.Fatal(err)
	}
	if p := Diff(s, offline, recorded); !p.Empty() {
		t.Errorf("a plan without a store sees changes: %+v", p.Items)
	}

	delete(store, "docker.io/library/nginx:1.27")
	_, err = m.Desire(s)
	var errs site.Errors
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].File != "roles/web.toml" || errs[0].Line != 3 {
		t.Errorf("a missing image: %v, want one error at roles/web.toml:3", err)
	}
}
