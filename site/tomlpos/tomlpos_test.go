package tomlpos

import (
	"net/netip"
	"strings"
	"testing"
)

const tricky = `top = 1
a.b.c = "dotted"
"quoted.key" = 2
list = [
  "x",
  { name = "inline", deep = [1, 2] },
]

[t]
k = "v"

[[arr]]
name = "first"

[[arr]]
name = "second"
  [[arr.sub]]
  v = 1
  [[arr.sub]]
  v = 2
  [arr.sub.leaf]
  z = true
`

func TestPositions(t *testing.T) {
	d, perr := Parse("f.toml", []byte(tricky))
	if perr != nil {
		t.Fatal(perr)
	}
	tests := []struct {
		path      string
		onKey     bool
		line, col int
	}{
		{"top", true, 1, 1},
		{"top", false, 1, 7},
		{"a.b.c", true, 2, 5},
		{"a.b.c", false, 2, 9},
		{"a", true, 2, 1},
		{`"quoted.key"`, false, 3, 16},
		{"list[0]", false, 5, 3},
		{"list[1]", false, 6, 3},
		{"list[1].name", false, 6, 12},
		{"list[1].deep[1]", false, 6, 33},
		{"t.k", false, 10, 5},
		{"arr[0].name", false, 13, 8},
		{"arr[1].name", false, 16, 8},
		{"arr[1].sub[0].v", false, 18, 7},
		{"arr[1].sub[1].v", false, 20, 7},
		{"arr[1].sub[1].leaf.z", false, 22, 7},
		{"arr[1].sub[1].leaf.missing", false, 21, 12}, // falls back to the closest ancestor
	}
	for _, tt := range tests {
		e := d.ErrAt(tt.path, tt.onKey, "m", "")
		if e.Line != tt.line || e.Column != tt.col {
			t.Errorf("ErrAt(%q, onKey=%v) at %d:%d, want %d:%d", tt.path, tt.onKey, e.Line, e.Column, tt.line, tt.col)
		}
	}
}

type inner struct {
	Port int `toml:"port" min:"1"`
}

type sample struct {
	Name  string            `toml:"name" required:"true" pattern:"^[a-z]+$"`
	Mode  string            `toml:"mode" enum:"fast|slow"`
	Addr  netip.Addr        `toml:"addr"`
	Net   netip.Prefix      `toml:"net"`
	Tags  []string          `toml:"tags"`
	Env   map[string]string `toml:"env"`
	In    *inner            `toml:"in"`
	Items []inner           `toml:"item"`
}

// TestDecodeCollectsEverything decodes a file with one mistake on every line and expects every
// one of them back, in place.
func TestDecodeCollectsEverything(t *testing.T) {
	src := `mode = "fsat"
addr = "10.0.0.300"
net = "10.0.0.1/8"
tags = "x"
env = { A = 1 }
extra = true
[in]
port = 0
[[item]]
port = "80"
`
	d, perr := Parse("s.toml", []byte(src))
	if perr != nil {
		t.Fatal(perr)
	}
	var v sample
	errs := (&Decoder{Patterns: map[string]string{"^[a-z]+$": "lowercase letters"}}).Decode(d, &v, "sample file")
	errs.Sort()
	want := []string{
		`s.toml:1:1: name: missing required key in sample file`,
		`s.toml:1:8: mode: expected one of "fast", "slow", got "fsat"; did you mean "fast"?`,
		`s.toml:2:8: addr: expected an IPv4 address, got "10.0.0.300"`,
		`s.toml:3:7: net: "10.0.0.1/8" has host bits set; did you mean "10.0.0.0/8"?`,
		`s.toml:4:8: tags: expected an array, got the string "x"`,
		`s.toml:5:13: env.A: expected a string, got the integer 1`,
		`s.toml:6:1: extra: unknown key in sample file`,
		`s.toml:8:8: in.port: expected an integer >= 1, got 0`,
		`s.toml:10:8: item[0].port: expected an integer, got the string "80"`,
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(errs), len(want), errs)
	}
	for i, e := range errs {
		if !strings.HasPrefix(e.Error(), want[i]) {
			t.Errorf("problem %d = %q, want prefix %q", i, e.Error(), want[i])
		}
	}
	if v.Net.String() != "10.0.0.0/8" {
		t.Errorf("a network with host bits decodes to %v, want it masked so later checks still run", v.Net)
	}
}

func TestSyntaxErrorPosition(t *testing.T) {
	_, perr := Parse("bad.toml", []byte("a = 1\nb = [1,\nc = 2\n"))
	if perr == nil || perr.Line != 3 || perr.File != "bad.toml" {
		t.Fatalf("Parse() error = %v, want one on line 3", perr)
	}
}

func TestClosest(t *testing.T) {
	tests := []struct{ s, want string }{
		{"mcа", ""}, {"macc", "mac"}, {"rloes", "roles"}, {"defualts", "defaults"}, {"zzzzzz", ""}, {"IP", "ip"}, //nolint:misspell // typos on purpose
	}
	for _, tt := range tests {
		if got := Closest(tt.s, []string{"mac", "ip", "defaults", "roles"}); got != tt.want {
			t.Errorf("Closest(%q) = %q, want %q", tt.s, got, tt.want)
		}
	}
}
