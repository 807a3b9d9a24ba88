package tomlpos

import (
	"reflect"
	"strings"
)

// Schemaer is a value type that describes its own TOML string form in JSON Schema.
type Schemaer interface{ JSONSchema() map[string]any }

// Schema returns the JSON Schema of struct type t as the Decoder reads it, with doc as its
// description: the same tags, so that the schema and the decoder cannot disagree.
func Schema(t reflect.Type, doc string) map[string]any {
	s := typeSchema(t)
	if doc != "" {
		s["description"] = doc
	}
	return s
}

func typeSchema(t reflect.Type) map[string]any {
	if sc, ok := reflect.Zero(t).Interface().(Schemaer); ok {
		return sc.JSONSchema()
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
	case reflect.Int, reflect.Int64:
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
	panic("tomlpos: no schema for " + t.String())
}

// Keys lists every key path of struct type t, tables and arrays of tables included
// ("network", "network.dhcp_range.start", "container.file.source").
func Keys(t reflect.Type) []string {
	return keysOf(t, "")
}

func keysOf(t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == addrType || t == prefixType {
		return nil
	}
	if _, ok := reflect.Zero(t).Interface().(Schemaer); ok {
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
