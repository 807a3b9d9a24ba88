package site

import (
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/cairn-appliance/cairn/site/tomlpos"
)

// Schema returns the JSON Schema (draft-07) of one kind of site file, "site", "host" or
// "role", or with "all" the schema of a whole site directory as one JSON document:
// {"site": <site.toml>, "hosts": {NAME: <host file>}, "roles": {NAME: <role file>}}.
// It is generated from the same struct tags the loader decodes with, so the two cannot drift.
//
// The schema checks shapes (types, keys, enums, patterns); Load checks everything else
// (addresses inside the network, duplicates, files, references between files).
func Schema(kind string) ([]byte, error) {
	kinds := map[string]reflect.Type{
		"site": reflect.TypeFor[siteFile](),
		"host": reflect.TypeFor[Host](),
		"role": reflect.TypeFor[Role](),
	}
	titles := map[string]string{
		"site": "cairn site.toml",
		"host": "cairn host file (hosts/NAME.toml)",
		"role": "cairn role file (roles/NAME.toml)",
	}
	var doc map[string]any
	switch t, ok := kinds[kind]; {
	case ok:
		doc = tomlpos.Schema(t, "")
		doc["title"] = titles[kind]
	case kind == "all":
		doc = map[string]any{
			"title":                "cairn site directory",
			"type":                 "object",
			"additionalProperties": false,
			"required":             []string{"site"},
			"properties": map[string]any{
				"site":  map[string]any{"$ref": "#/definitions/site"},
				"hosts": map[string]any{"type": "object", "additionalProperties": map[string]any{"$ref": "#/definitions/host"}},
				"roles": map[string]any{"type": "object", "additionalProperties": map[string]any{"$ref": "#/definitions/role"}},
			},
			"definitions": map[string]any{
				"site": tomlpos.Schema(kinds["site"], titles["site"]),
				"host": tomlpos.Schema(kinds["host"], titles["host"]),
				"role": tomlpos.Schema(kinds["role"], titles["role"]),
			},
		}
	default:
		return nil, fmt.Errorf("unknown kind %q: expected all, site, host or role", kind)
	}
	doc["$schema"] = "http://json-schema.org/draft-07/schema#"
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// Keys lists every key path of the three file kinds ("network.dhcp_range.start",
// "container.file.source"), for documentation and its tests.
func Keys() map[string][]string {
	return map[string][]string{
		"site": tomlpos.Keys(reflect.TypeFor[siteFile]()),
		"host": tomlpos.Keys(reflect.TypeFor[Host]()),
		"role": tomlpos.Keys(reflect.TypeFor[Role]()),
	}
}
