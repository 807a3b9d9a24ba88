package tomlpos

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
		if e := sf.Tag.Get("enum"); e != "" {
			f.enum = strings.Split(e, "|")
		}
		if m := sf.Tag.Get("min"); m != "" {
			n, err := strconv.Atoi(m)
			if err != nil {
				panic(fmt.Sprintf("tomlpos: bad min tag on %s.%s", t.Name(), sf.Name))
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

// Decoder fills structs from a parsed Document and collects every problem instead of stopping
// at the first: wrong types, unknown keys, missing required keys, bad values.
//
// Struct tags say what each field is: toml (the key; "-" or none: not read), required ("true"),
// enum (allowed values split by |), min (for integers), pattern (a regular expression for
// strings; Patterns must say in words what it accepts) and doc (a description, used in hints
// and in the JSON Schema). Fields of types with an UnmarshalText method decode from strings
// and report a *ValueError's message and hint; netip.Addr must be IPv4; netip.Prefix must be
// an IPv4 network with no host bits. Strings may not be empty, except inside arrays and maps.
type Decoder struct {
	// Patterns maps every pattern tag to the words messages use for it.
	Patterns map[string]string
}

// Decode decodes doc into v, a pointer to a struct. what names the file kind in messages
// ("host file").
func (dc *Decoder) Decode(doc *Document, v any, what string) Errors {
	d := decoder{Decoder: dc, doc: doc}
	d.decodeTable("", doc.Data, reflect.ValueOf(v).Elem(), what)
	return d.errs
}

type decoder struct {
	*Decoder
	doc  *Document
	errs Errors
}

func (d *decoder) fail(path string, onKey bool, msg, hint string) {
	d.errs = append(d.errs, d.doc.ErrAt(path, onKey, msg, hint))
}

func (d *decoder) decodeTable(path string, m map[string]any, v reflect.Value, what string) {
	fs := fieldsOf(v.Type())
	for _, f := range fs {
		raw, ok := m[f.key]
		if !ok {
			if f.required {
				at := path
				d.errs = append(d.errs, d.missing(at, Join(path, f.key), f, what))
			}
			continue
		}
		d.decodeValue(Join(path, f.key), raw, v.Field(f.index), f)
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
		if s := Closest(k, keys); s != "" {
			hint = fmt.Sprintf("did you mean %q?", s)
		}
		d.fail(Join(path, k), true, "unknown key in "+what, hint)
	}
}

// missing reports a required key that is absent, at the table that should hold it.
func (d *decoder) missing(table, key string, f field, what string) *Error {
	e := d.doc.ErrAt(table, true, "", "")
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
			var ve *ValueError
			if errors.As(err, &ve) {
				msg, hint = ve.Msg, ve.Hint
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
			if c := Closest(s, f.enum); c != "" {
				hint = fmt.Sprintf("did you mean %q?", c)
			}
			d.fail(path, false, fmt.Sprintf("expected one of %s, got %q", QuoteList(f.enum), s), hint)
			return
		}
		if f.pattern != "" && !matchPattern(f.pattern, s) {
			want, ok := d.Patterns[f.pattern]
			if !ok {
				want = "a value matching " + f.pattern
			}
			d.fail(path, false, fmt.Sprintf("expected %s, got %q", want, s), "")
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
	case reflect.Int, reflect.Int64:
		n, ok := raw.(int64)
		if !ok {
			d.mismatch(path, raw, "an integer")
			return
		}
		if f.min != nil && n < int64(*f.min) {
			d.fail(path, false, fmt.Sprintf("expected an integer >= %d, got %d", *f.min, n), "")
			return
		}
		if t.Kind() == reflect.Int && n != int64(int(n)) {
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
			d.decodeValue(Elem(path, i), item, s.Index(i), field{})
		}
		v.Set(s)
	case reflect.Map:
		m, ok := raw.(map[string]any)
		if !ok {
			d.mismatch(path, raw, "a table of strings")
			return
		}
		out := reflect.MakeMapWithSize(t, len(m))
		for _, k := range SortedKeys(m) {
			s, ok := d.str(Join(path, k), m[k], "a string")
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
		panic("tomlpos: no decoder for " + t.String())
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

// SortedKeys returns the keys of m in order.
func SortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// QuoteList quotes each value and joins them with commas.
func QuoteList(vs []string) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = strconv.Quote(v)
	}
	return strings.Join(q, ", ")
}

// Closest returns the candidate nearest to s by edit distance, if it is near enough to be a typo.
func Closest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), c); d < bestD && d <= max(1, len(c)/3) {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance counts the insertions, deletions, substitutions and swaps of neighbours that turn
// a into b (optimal string alignment): "fsat" is one step from "fast".
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	rows := [3][]int{make([]int, len(b)+1), make([]int, len(b)+1), make([]int, len(b)+1)}
	for j := range rows[1] {
		rows[1][j] = j
	}
	for i := 1; i <= len(a); i++ {
		pp, prev, cur := rows[0], rows[1], rows[2]
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], pp[j-2]+1)
			}
		}
		rows = [3][]int{prev, cur, pp}
	}
	return rows[1][len(b)]
}
