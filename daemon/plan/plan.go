// Package plan compares what a site asks for with what the daemon last applied, and says what
// would change, host by host, as typed actions, marking those that destroy data. It refuses
// plans that would remove most of a site at once unless the site allows it.
//
// It computes; it does not apply (the daemon does) and reads nothing but its arguments.
package plan

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/site"
)

// Action is what happens to one host.
type Action string

// The actions of a plan, from the least to the most disruptive.
const (
	Add         Action = "add"         // a host new to the site: it will be provisioned
	Change      Action = "change"      // its spec changed; it takes effect on the next provisioning
	Containers  Action = "containers"  // its containers change; the host agent converges them
	Reprovision Action = "reprovision" // its provisioning counter was raised: the disk is rewritten
	Remove      Action = "remove"      // gone from the site: cairn forgets it and its tokens
)

// Item is one change to one host.
type Item struct {
	Host        string   `json:"host"`
	Action      Action   `json:"action"`
	Destructive bool     `json:"destructive,omitempty"`
	Details     []string `json:"details,omitempty"` // what differs, for people
}

// Plan is every change a site brings, sorted by host and action.
type Plan struct {
	Items []Item `json:"items"`
	// Refused says why the plan must not be applied ("" when it may).
	Refused string `json:"refused,omitempty"`
}

// Empty reports whether the plan changes nothing.
func (p *Plan) Empty() bool { return len(p.Items) == 0 }

// Count returns how many items have action a.
func (p *Plan) Count(a Action) int {
	n := 0
	for _, it := range p.Items {
		if it.Action == a {
			n++
		}
	}
	return n
}

// Desired is what a site asks of one host, in the canonical JSON the state keeps.
type Desired struct {
	Host       *site.Host
	Spec       json.RawMessage // everything that shapes the installed host
	Containers json.RawMessage // the containers of all its roles, sorted by name
	// Digests maps each container's name to the digest its image resolved to in the store
	// (nil for none), and Resolved says whether images were resolved at all: a plan made
	// without a store (cairn site plan) cannot see a tag move, and does not compare digests.
	Digests  json.RawMessage
	Resolved bool
}

// spec is the part of a host that provisioning writes to it.
type spec struct {
	MAC               string            `json:"mac"`
	IP                string            `json:"ip,omitempty"`
	OS                string            `json:"os"`
	Disk              string            `json:"disk"`
	Partitions        []site.Partition  `json:"partitions,omitempty"`
	SSHAuthorizedKeys []string          `json:"ssh_authorized_keys,omitempty"`
	Timezone          string            `json:"timezone"`
	Labels            map[string]string `json:"labels,omitempty"`
}

// container is a container as a host runs it: files by content hash, not content.
type container struct {
	site.Container
	Role string `json:"role"`
}

// Desire works out what the site asks of each host, by name.
func Desire(s *site.Site) (map[string]Desired, error) { return new(Memo).Desire(s) }

// A Memo remembers the spec Desire encoded for each host of the last site it was given, so
// that the next site, in which few hosts changed, costs few encodings. It knows hosts by
// identity: a site.Loader returns a host whose file did not change as the same *site.Host.
type Memo struct {
	// Resolve, when set, gives the digest each container image resolves to in the store (see
	// site.Site.ResolveImages): Desire fails with the positions of the images it cannot
	// resolve, and the digests are part of each host's containers, so that a tag moved to
	// another digest changes the hosts that run it.
	Resolve func(site.Image) (string, error)

	specs map[string]memoSpec // by host name
}

type memoSpec struct {
	host *site.Host
	spec json.RawMessage
}

// Desire works out what the site asks of each host, by name, encoding only the hosts that
// are new since the last call.
func (m *Memo) Desire(s *site.Site) (map[string]Desired, error) {
	var digests map[site.Image]string
	if m.Resolve != nil {
		var err error
		if digests, err = s.ResolveImages(m.Resolve); err != nil {
			return nil, err
		}
	}
	if m.specs == nil {
		m.specs = make(map[string]memoSpec, len(s.Hosts))
	}
	out := make(map[string]Desired, len(s.Hosts))
	byRoles := map[string]encoded{} // hosts share a few lists of roles
	for _, h := range s.Hosts {
		memo, ok := m.specs[h.Name]
		if !ok || memo.host != h {
			sp := spec{MAC: h.MAC.String(), OS: h.OS, Disk: string(h.Disk), Partitions: h.Partitions,
				SSHAuthorizedKeys: h.SSHAuthorizedKeys, Timezone: h.Timezone, Labels: h.Labels}
			if h.IP.IsValid() {
				sp.IP = h.IP.String()
			}
			b, err := json.Marshal(sp)
			if err != nil {
				return nil, fmt.Errorf("host %s: %w", h.Name, err)
			}
			memo = memoSpec{host: h, spec: b}
			m.specs[h.Name] = memo
		}
		key := strings.Join(h.Roles, "\x00")
		cs, ok := byRoles[key]
		if !ok {
			var err error
			if cs, err = containersOf(s, h.Roles, digests); err != nil {
				return nil, fmt.Errorf("host %s: %w", h.Name, err)
			}
			byRoles[key] = cs
		}
		out[h.Name] = Desired{Host: h, Spec: memo.spec, Containers: cs.containers, Digests: cs.digests, Resolved: digests != nil}
	}
	if len(m.specs) > len(out) { // hosts left the site: forget them
		maps.DeleteFunc(m.specs, func(name string, _ memoSpec) bool { _, ok := out[name]; return !ok })
	}
	return out, nil
}

// encoded is the containers of a list of roles as Desired holds them.
type encoded struct{ containers, digests json.RawMessage }

// containersOf encodes the containers of a list of roles, sorted by name, and their images'
// digests by container name (when digests is not nil); nil for none.
func containersOf(s *site.Site, roles []string, digests map[site.Image]string) (encoded, error) {
	var cs []container
	byName := map[string]string{}
	for _, r := range roles {
		for _, c := range s.Roles[r].Containers {
			cs = append(cs, container{Container: c, Role: r})
			byName[c.Name] = digests[c.Image]
		}
	}
	if len(cs) == 0 {
		return encoded{}, nil
	}
	slices.SortFunc(cs, func(a, b container) int { return cmp.Compare(a.Name, b.Name) })
	var e encoded
	var err error
	if e.containers, err = json.Marshal(cs); err != nil || digests == nil {
		return e, err
	}
	e.digests, err = json.Marshal(byName) // keys sorted
	return e, err
}

// Compute plans the site s against the recorded hosts.
func Compute(s *site.Site, recorded []state.Host) (*Plan, error) {
	desired, err := Desire(s)
	if err != nil {
		return nil, err
	}
	return Diff(s, desired, recorded), nil
}

// Discovered maps the MAC of every recorded machine that PXE-booted unknown (phase
// discovered) to its record's name: a site host with that MAC adopts the record.
func Discovered(recorded []state.Host) map[site.MAC]string {
	out := map[site.MAC]string{}
	for _, h := range recorded {
		if h.Phase != state.Discovered {
			continue
		}
		if m, err := site.ParseMAC(h.MAC); err == nil {
			out[m] = h.Name
		}
	}
	return out
}

// Diff plans the site s, whose hosts want desired (see Desire), against the recorded hosts.
func Diff(s *site.Site, desired map[string]Desired, recorded []state.Host) *Plan {
	p := &Plan{Items: []Item{}}
	if !slices.IsSortedFunc(recorded, byName) {
		recorded = slices.SortedFunc(slices.Values(recorded), byName)
	}
	discovered := Discovered(recorded)
	managed, hadContainers := 0, false
	for _, h := range recorded {
		if h.Phase != state.Discovered {
			managed++
		}
		hadContainers = hadContainers || len(h.Containers) > 0
	}
	// The site's hosts and the recorded ones are both sorted by name: walk them side by side.
	var gone []state.Host // recorded, no longer in the site
	j := 0
	wantContainers := false
	for _, h := range s.Hosts {
		name := h.Name
		for j < len(recorded) && recorded[j].Name < name {
			gone = append(gone, recorded[j])
			j++
		}
		var old *state.Host
		if j < len(recorded) && recorded[j].Name == name {
			old = &recorded[j]
			j++
		}
		d := desired[name]
		wantContainers = wantContainers || len(d.Containers) > 0
		if old == nil || old.Phase == state.Discovered {
			it := Item{Host: name, Action: Add, Details: []string{fmt.Sprintf("%s, %s, os %s on %s", d.Host.MAC, ipOrDHCP(d.Host), d.Host.OS, d.Host.Disk)}}
			if m, seen := discovered[d.Host.MAC]; seen {
				it.Details = append(it.Details, fmt.Sprintf("adopts the discovered machine %s", m))
			}
			p.Items = append(p.Items, it)
			continue
		}
		if d.Host.Provision > old.Provision {
			p.Items = append(p.Items, Item{Host: name, Action: Reprovision, Destructive: true,
				Details: []string{fmt.Sprintf("provision %d → %d: the disk of %s is written again; its data is lost", old.Provision, d.Host.Provision, name)}})
		}
		if !sameJSON(old.Spec, d.Spec) {
			details := diffObjects(old.Spec, d.Spec)
			if d.Host.Provision <= old.Provision {
				details = append(details, "takes effect when the host is next provisioned (raise provision to do it now)")
			}
			p.Items = append(p.Items, Item{Host: name, Action: Change, Details: details})
		}
		digestsMoved := d.Resolved && !sameJSON(old.Digests, d.Digests)
		if !sameJSON(old.Containers, d.Containers) || digestsMoved {
			details := diffContainers(old.Containers, d.Containers)
			if digestsMoved {
				details = append(details, diffDigests(old.Digests, d.Digests)...)
			}
			p.Items = append(p.Items, Item{Host: name, Action: Containers, Details: details})
		}
	}
	gone = append(gone, recorded[j:]...)
	removals := 0
	for _, h := range gone {
		if h.Phase == state.Discovered {
			continue
		}
		removals++
		p.Items = append(p.Items, Item{Host: h.Name, Action: Remove, Destructive: true,
			Details: []string{fmt.Sprintf("%s (%s) leaves the site: cairn forgets it and revokes its tokens; its disk is left as it is", h.Name, h.MAC)}})
	}
	if !s.Settings.AllowMassRemoval {
		switch {
		case managed > 0 && removals*2 > managed:
			p.Refused = fmt.Sprintf("the plan removes %d of %d hosts; if that is meant, set allow_mass_removal = true in [site] of site.toml for this change", removals, managed)
		case hadContainers && !wantContainers:
			p.Refused = "the plan removes every container of the site; if that is meant, set allow_mass_removal = true in [site] of site.toml for this change"
		}
	}
	return p
}

func byName(a, b state.Host) int { return strings.Compare(a.Name, b.Name) }

// sameJSON compares two JSON values as written by Desire, whatever white space they picked up
// on the way (an API that indents, say).
func sameJSON(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true // the usual case: both as Desire wrote them
	}
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return bytes.Equal(a, b)
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}

func ipOrDHCP(h *site.Host) string {
	if h.IP.IsValid() {
		return h.IP.String()
	}
	return "address by DHCP"
}

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// diffObjects names the top-level keys of two JSON objects that differ, with both values.
func diffObjects(a, b json.RawMessage) []string {
	var x, y map[string]json.RawMessage
	_ = json.Unmarshal(a, &x) // canonical JSON written by Desire; a bad old value diffs as empty
	_ = json.Unmarshal(b, &y)
	keys := map[string]bool{}
	for k := range x {
		keys[k] = true
	}
	for k := range y {
		keys[k] = true
	}
	var out []string
	for _, k := range sortedNames(keys) {
		if !sameJSON(x[k], y[k]) {
			out = append(out, fmt.Sprintf("%s: %s → %s", k, short(x[k]), short(y[k])))
		}
	}
	return out
}

func short(v json.RawMessage) string {
	if len(v) == 0 {
		return "(none)"
	}
	if len(v) > 60 {
		return string(v[:57]) + "…"
	}
	return string(v)
}

// diffContainers says which containers are added, removed or changed, and how.
func diffContainers(a, b json.RawMessage) []string {
	parse := func(raw json.RawMessage) map[string]json.RawMessage {
		var cs []json.RawMessage
		_ = json.Unmarshal(raw, &cs)
		m := map[string]json.RawMessage{}
		for _, c := range cs {
			var named struct{ Name string }
			_ = json.Unmarshal(c, &named)
			m[named.Name] = c
		}
		return m
	}
	x, y := parse(a), parse(b)
	var out []string
	for _, n := range sortedNames(y) {
		old, ok := x[n]
		switch {
		case !ok:
			out = append(out, "+ container "+n)
		case !sameJSON(old, y[n]):
			out = append(out, "~ container "+n+": "+strings.Join(diffObjects(old, y[n]), "; "))
		}
	}
	for _, n := range sortedNames(x) {
		if _, ok := y[n]; !ok {
			out = append(out, "- container "+n)
		}
	}
	return out
}

// diffDigests says which containers that are in both a and b (digests by container name) run
// their image at another digest.
func diffDigests(a, b json.RawMessage) []string {
	var x, y map[string]string
	_ = json.Unmarshal(a, &x)
	_ = json.Unmarshal(b, &y)
	var out []string
	for _, n := range sortedNames(y) {
		if old, ok := x[n]; ok && old != y[n] {
			out = append(out, fmt.Sprintf("~ container %s: image digest %s → %s", n, old, y[n]))
		}
	}
	return out
}

// Print writes the plan for people, in the manner of terraform plan.
func (p *Plan) Print(w io.Writer) error {
	sign := map[Action]string{Add: "+", Change: "~", Containers: "~", Reprovision: "-/+", Remove: "-"}
	var b strings.Builder
	if p.Empty() {
		b.WriteString("No changes: the hosts are as the site says.\n")
	}
	for _, it := range p.Items {
		fmt.Fprintf(&b, "%3s host %s: %s", sign[it.Action], it.Host, it.Action)
		if it.Destructive {
			b.WriteString(" (destructive)")
		}
		b.WriteString("\n")
		for _, d := range it.Details {
			fmt.Fprintf(&b, "        %s\n", d)
		}
	}
	if !p.Empty() {
		fmt.Fprintf(&b, "\nPlan: %d to add, %d to change, %d with new containers, %d to re-provision, %d to remove.\n",
			p.Count(Add), p.Count(Change), p.Count(Containers), p.Count(Reprovision), p.Count(Remove))
	}
	if p.Refused != "" {
		fmt.Fprintf(&b, "\nRefused: %s\n", p.Refused)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
