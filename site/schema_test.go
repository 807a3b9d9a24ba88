package site

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// compileSchema checks a generated schema against the draft-07 metaschema (the compiler does
// that) and returns it ready to validate documents.
func compileSchema(t *testing.T, kind string) *jsonschema.Schema {
	t.Helper()
	raw, err := Schema(kind)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("Schema(%q) is not JSON: %v", kind, err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	url := "https://cairn.invalid/" + kind + ".json"
	if err := c.AddResource(url, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(url)
	if err != nil {
		t.Fatalf("Schema(%q) is not a valid JSON Schema: %v", kind, err)
	}
	return s
}

// tomlAsJSON reads a TOML file and returns it as the JSON value a schema validator sees.
func tomlAsJSON(t *testing.T, path string) any {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := toml.Unmarshal(src, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// asJSON round-trips v through encoding/json, as a tool that converts TOML to JSON would.
func asJSON(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// siteAsJSON converts a whole site directory into the document Schema("all") describes.
func siteAsJSON(t *testing.T, dir string) any {
	t.Helper()
	doc := map[string]any{"site": tomlAsJSON(t, filepath.Join(dir, "site.toml"))}
	for _, sub := range []string{"hosts", "roles"} {
		files, _ := filepath.Glob(filepath.Join(dir, sub, "*.toml"))
		m := map[string]any{}
		for _, f := range files {
			m[strings.TrimSuffix(filepath.Base(f), ".toml")] = tomlAsJSON(t, f)
		}
		doc[sub] = m
	}
	return asJSON(t, doc)
}

func TestSchemaValidatesExampleSite(t *testing.T) {
	all := compileSchema(t, "all")
	if err := all.Validate(siteAsJSON(t, "../examples/site")); err != nil {
		t.Errorf("examples/site as JSON does not validate against the site schema: %v", err)
	}
	for kind, glob := range map[string]string{"site": "site.toml", "host": "hosts/*.toml", "role": "roles/*.toml"} {
		s := compileSchema(t, kind)
		files, _ := filepath.Glob(filepath.Join("../examples/site", glob))
		if len(files) == 0 {
			t.Fatalf("no example files for %s", glob)
		}
		for _, f := range files {
			if err := s.Validate(asJSON(t, tomlAsJSON(t, f))); err != nil {
				t.Errorf("%s does not validate against the %s schema: %v", f, kind, err)
			}
		}
	}
}

// TestSchemaRejects checks that the schema catches what an editor should underline.
func TestSchemaRejects(t *testing.T) {
	tests := []struct{ kind, file string }{
		{"host", "testdata/unknown-key/hosts/a.toml"}, // unknown key
		{"host", "testdata/types/hosts/a.toml"},       // wrong types
		{"host", "testdata/types/hosts/b.toml"},       // bad enum and size
		{"role", "testdata/unknown-key/roles/web.toml"},
		{"role", "testdata/containers/roles/app.toml"},
		{"site", "testdata/types/site.toml"},
		{"site", "testdata/unknown-key/site.toml"},
	}
	for _, tt := range tests {
		s := compileSchema(t, tt.kind)
		if err := s.Validate(asJSON(t, tomlAsJSON(t, tt.file))); err == nil {
			t.Errorf("%s validates against the %s schema, want a failure", tt.file, tt.kind)
		}
	}
	if err := compileSchema(t, "all").Validate(siteAsJSON(t, "testdata/types")); err == nil {
		t.Error("testdata/types validates against the site directory schema, want a failure")
	}
}

func TestSchemaUnknownKind(t *testing.T) {
	if _, err := Schema("hosts"); err == nil {
		t.Error(`Schema("hosts") succeeded, want an error`)
	}
}

// TestSchemaFilesCurrent keeps docs/schema/*.json (what editors point at) equal to the model.
func TestSchemaFilesCurrent(t *testing.T) {
	for _, kind := range []string{"all", "site", "host", "role"} {
		want, _ := Schema(kind)
		got, err := os.ReadFile(filepath.Join("../docs/schema", kind+".json"))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("docs/schema/%s.json is missing or stale; run make schema", kind)
		}
	}
}

// TestDocsCoverEveryKey keeps docs/site.md in step with the model: every key is documented.
func TestDocsCoverEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../docs/site.md")
	if err != nil {
		t.Fatal(err)
	}
	for kind, keys := range Keys() {
		for _, k := range keys {
			if !bytes.Contains(doc, []byte("`"+k+"`")) {
				t.Errorf("docs/site.md does not document the %s key `%s`", kind, k)
			}
		}
	}
}
