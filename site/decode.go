package site

import (
	"encoding"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// field is one key of a TOML table, read from the struct tags of the model.
type field struct {
	key      string
	index    int
	required bool
	enum     []string
	min      *int
	pattern  string
	doc      string
}

var fieldCache sync.Map // reflect.Type -> []field

// patternText says in words what each pattern tag of the model accepts.
var patternText = map[string]string{
	`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`: "a DNS label: lowercase letters, digits and '-', at most 63, not starting or ending with '-'",
	`^[a-z0-9][a-z0-9._-]*$`:               "a name of lowercase letters, digits, '.', '_' and '-', starting with a letter or digit",
	`^[A-Za-z0-9_-]{1,36}$`:                "a label of letters, digits, '_' and '-', at most 36",
	`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`:    "a name of letters, digits, '_', '.' and '-', at most 63, starting with a letter or digit",
}

// fieldsOf lists the TOML keys of a model struct, in declaration order.
func fieldsOf(t reflect.Type) []field {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.([]field)
	}
	var fs []field
	for i := range t.NumField() {
		sf := t.Field(i)
		key := sf.Tag.Get("toml")
		if key == "" || key == "-" {
			continue
		}
		f := field{key: key, index: i, required: sf.Tag.Get("required") == "true",
			pattern: sf.Tag.Get("pattern"), doc: sf.Tag.Get("doc")}
		if _, ok := patternText[f.pattern]; f.pattern != "" && !ok {
			panic(fmt.Sprintf("site: pattern of %s.%s has no text in patternText", t.Name(), sf.Name))
		}
		if e := sf.Tag.Get("enum"); e != "" {
			f.enum = strings.Split(e, "|")
		}
		if m := sf.Tag.Get("min"); m != "" {
			n, err := strconv.Atoi(m)
			if err != nil {
				panic(fmt.Sprintf("site: bad min tag on %s.%s", t.Name(), sf.Name))
			}
			f.min = &n
		}
		fs = append(fs, f)
	}
	fieldCache.Store(t, fs)
	return fs
}

var (
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	addrType        = reflect.TypeFor[netip.Addr]()
	prefixType      = reflect.TypeFor[netip.Prefix]()
)

// decoder fills model structs from a parsed document and collects every problem instead of
// stopping at the first: wrong types, unknown keys, missing required keys, bad values.
type decoder struct {
	doc  *document
	errs Errors
}

func (d *decoder) fail(path string, onKey bool, msg, hint string) {
	d.errs = append(d.errs, d.doc.errAt(path, onKey, msg, hint))
}

func (d *decoder) decodeTable(path string, m map[string]any, v reflect.Value, what string) {
	fs := fieldsOf(v.Type())
	for _, f := range fs {
		raw, ok := m[f.key]
		if !ok {
			if f.required {
				at := path
				d.errs = append(d.errs, d.missing(at, join(path, f.key), f, what))
			}
			continue
		}
		d.decodeValue(join(path, f.key), raw, v.Field(f.index), f)
	}
	var unknown []string
	for k := range m {
		if !slices.ContainsFunc(fs, func(f field) bool { return f.key == k }) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		keys := make([]string, len(fs))
		for i, f := range fs {
			keys[i] = f.key
		}
		hint := "known keys are: " + strings.Join(keys, ", ")
		if s := closest(k, keys); s != "" {
			hint = fmt.Sprintf("did you mean %q?", s)
		}
		d.fail(join(path, k), true, "unknown key in "+what, hint)
	}
}

// missing reports a required key that is absent, at the table that should hold it.
func (d *decoder) missing(table, key string, f field, what string) *Error {
	e := d.doc.errAt(table, true, "", "")
	if table == "" {
		e.Line, e.Column = 1, 1
	}
	e.Key = key
	e.Message = "missing required key in " + what
	e.Hint = f.doc
	return e
}

func (d *decoder) decodeValue(path string, raw any, v reflect.Value, f field) {
	t := v.Type()
	switch {
	case t == addrType:
		s, ok := d.str(path, raw, "an IPv4 address such as \"10.20.0.5\"")
		if !ok {
			return
		}
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			d.fail(path, false, fmt.Sprintf("expected an IPv4 address, got %q", s), "cairn provisions over IPv4; write four numbers such as \"10.20.0.5\"")
			return
		}
		v.Set(reflect.ValueOf(a))
		return
	case t == prefixType:
		s, ok := d.str(path, raw, "an IPv4 CIDR such as \"10.20.0.0/24\"")
		if !ok {
			return
		}
		p, err := netip.ParsePrefix(s)
		switch {
		case err != nil || !p.Addr().Is4():
			d.fail(path, false, fmt.Sprintf("expected an IPv4 CIDR, got %q", s), "write the network address and prefix length, e.g. \"10.20.0.0/24\"")
		case p != p.Masked():
			d.fail(path, false, fmt.Sprintf("%q has host bits set", s), fmt.Sprintf("did you mean %q?", p.Masked()))
			v.Set(reflect.ValueOf(p.Masked())) // so that the checks that depend on it still run
		default:
			v.Set(reflect.ValueOf(p))
		}
		return
	case reflect.PointerTo(t).Implements(textUnmarshaler):
		s, ok := d.str(path, raw, "a string")
		if !ok {
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			msg, hint := err.Error(), ""
			var ve *valueError
			if errors.As(err, &ve) {
				msg, hint = ve.msg, ve.hint
			}
			d.fail(path, false, msg, hint)
		}
		return
	}
	switch t.Kind() {
	case reflect.String:
		s, ok := d.str(path, raw, "a string")
		if !ok {
			return
		}
		if s == "" {
			d.fail(path, false, "must not be empty", "remove the key to leave it unset")
			return
		}
		if len(f.enum) > 0 && !slices.Contains(f.enum, s) {
			hint := ""
			if c := closest(s, f.enum); c != "" {
				hint = fmt.Sprintf("did you mean %q?", c)
			}
			d.fail(path, false, fmt.Sprintf("expected one of %s, got %q", quoteList(f.enum), s), hint)
			return
		}
		if f.pattern != "" && !matchPattern(f.pattern, s) {
			d.fail(path, false, fmt.Sprintf("expected %s, got %q", patternText[f.pattern], s), "")
			return
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := raw.(bool)
		if !ok {
			d.mismatch(path, raw, "true or false")
			return
		}
		v.SetBool(b)
	case reflect.Int:
		n, ok := raw.(int64)
		if !ok {
			d.mismatch(path, raw, "an integer")
			return
		}
		if f.min != nil && n < int64(*f.min) {
			d.fail(path, false, fmt.Sprintf("expected an integer >= %d, got %d", *f.min, n), "")
			return
		}
		if n != int64(int(n)) {
			d.fail(path, false, fmt.Sprintf("%d is out of range", n), "")
			return
		}
		v.SetInt(n)
	case reflect.Slice:
		items, ok := raw.([]any)
		if !ok {
			d.mismatch(path, raw, "an array")
			return
		}
		s := reflect.MakeSlice(t, len(items), len(items))
		for i, item := range items {
			d.decodeValue(elem(path, i), item, s.Index(i), field{})
		}
		v.Set(s)
	case reflect.Map:
		m, ok := raw.(map[string]any)
		if !ok {
			d.mismatch(path, raw, "a table of strings")
			return
		}
		out := reflect.MakeMapWithSize(t, len(m))
		for _, k := range sortedKeys(m) {
			s, ok := d.str(join(path, k), m[k], "a string")
			if ok {
				out.SetMapIndex(reflect.ValueOf(k), reflect.ValueOf(s))
			}
		}
		v.Set(out)
	case reflect.Pointer:
		p := reflect.New(t.Elem())
		d.decodeValue(path, raw, p.Elem(), f)
		v.Set(p)
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			d.mismatch(path, raw, "a table")
			return
		}
		d.decodeTable(path, m, v, tableName(path))
	default:
		panic("site: no decoder for " + t.String())
	}
}

// tableName names a table in messages: "[network]", "container[0].health".
func tableName(path string) string {
	if strings.Contains(path, "[") {
		return path
	}
	return "[" + path + "]"
}

var patternCache sync.Map // string -> *regexp.Regexp

func matchPattern(pattern, s string) bool {
	re, ok := patternCache.Load(pattern)
	if !ok {
		re, _ = patternCache.LoadOrStore(pattern, regexp.MustCompile(pattern))
	}
	return re.(*regexp.Regexp).MatchString(s)
}

func (d *decoder) str(path string, raw any, want string) (string, bool) {
	s, ok := raw.(string)
	if !ok {
		d.mismatch(path, raw, want)
	}
	return s, ok
}

func (d *decoder) mismatch(path string, raw any, want string) {
	hint := ""
	_, isString := raw.(string)
	switch {
	case isScalar(raw) && !isString && (strings.Contains(want, "string") || strings.Contains(want, "\"")):
		hint = "put the value in double quotes"
	case isString && want == "an array":
		hint = `write it as an array, e.g. ["value"]`
	}
	d.fail(path, false, fmt.Sprintf("expected %s, got %s", want, describe(raw)), hint)
}

func isScalar(v any) bool {
	switch v.(type) {
	case []any, map[string]any:
		return false
	}
	return true
}

// describe names a decoded TOML value for messages.
func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", x)
	case int64:
		return fmt.Sprintf("the integer %d", x)
	case float64:
		return fmt.Sprintf("the float %v", x)
	case bool:
		return fmt.Sprintf("%v", x)
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date-time"
	default:
		return "a date or time"
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func quoteList(vs []string) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = strconv.Quote(v)
	}
	return strings.Join(q, ", ")
}

// closest returns the candidate nearest to s by edit distance, if it is near enough to be a typo.
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), c); d < bestD && d <= max(1, len(c)/3) {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
