package site

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
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
		doc = schemaOf(t, "")
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
				"site": schemaOf(kinds["site"], titles["site"]),
				"host": schemaOf(kinds["host"], titles["host"]),
				"role": schemaOf(kinds["role"], titles["role"]),
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

// schemaer is a site type that describes its own TOML string form.
type schemaer interface{ jsonSchema() map[string]any }

func schemaOf(t reflect.Type, doc string) map[string]any {
	s := typeSchema(t)
	if doc != "" {
		s["description"] = doc
	}
	return s
}

func typeSchema(t reflect.Type) map[string]any {
	if sc, ok := reflect.Zero(t).Interface().(schemaer); ok {
		return sc.jsonSchema()
	}
	switch t {
	case addrType:
		return map[string]any{"type": "string", "format": "ipv4"}
	case prefixType:
		return map[string]any{"type": "string", "pattern": `^([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}$`}
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string", "minLength": 1}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int:
		return map[string]any{"type": "integer"}
	case reflect.Slice:
		items := typeSchema(t.Elem())
		if t.Elem() == reflect.TypeFor[string]() {
			delete(items, "minLength") // arguments may be empty strings
		}
		return map[string]any{"type": "array", "items": items}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "string"}}
	case reflect.Pointer:
		return typeSchema(t.Elem())
	case reflect.Struct:
		props := map[string]any{}
		var required []string
		for _, f := range fieldsOf(t) {
			p := typeSchema(t.Field(f.index).Type)
			if f.doc != "" {
				p["description"] = f.doc
			}
			if len(f.enum) > 0 {
				p["enum"] = f.enum
				delete(p, "minLength")
			}
			if f.pattern != "" {
				p["pattern"] = f.pattern
			}
			if f.min != nil {
				p["minimum"] = *f.min
			}
			props[f.key] = p
			if f.required {
				required = append(required, f.key)
			}
		}
		s := map[string]any{"type": "object", "additionalProperties": false, "properties": props}
		if len(required) > 0 {
			s["required"] = required
		}
		return s
	}
	panic("site: no schema for " + t.String())
}

// Keys lists every key path of the three file kinds ("network.dhcp_range.start",
// "container.file.source"), for documentation and its tests.
func Keys() map[string][]string {
	out := map[string][]string{}
	for kind, t := range map[string]reflect.Type{"site": reflect.TypeFor[siteFile](), "host": reflect.TypeFor[Host](), "role": reflect.TypeFor[Role]()} {
		out[kind] = keysOf(t, "")
	}
	return out
}

func keysOf(t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == addrType || t == prefixType {
		return nil
	}
	if _, ok := reflect.Zero(t).Interface().(schemaer); ok {
		return nil
	}
	var keys []string
	for _, f := range fieldsOf(t) {
		k := strings.TrimPrefix(prefix+"."+f.key, ".")
		keys = append(keys, k)
		keys = append(keys, keysOf(t.Field(f.index).Type, k)...)
	}
	return keys
}
