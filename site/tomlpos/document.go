package tomlpos

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Document is one parsed TOML file: its values, and where in the source each key and each value
// stands, so that every later check can point at the exact line and column.
type Document struct {
	File  string          // the name used in errors
	Data  map[string]any  // the decoded values: string, int64, float64, bool, time values, []any, map[string]any
	at    map[string]span // by path, as built by join and elem
	lines []int           // offsets at which lines start
}

// span holds byte offsets of a key and of its value.
type span struct{ key, val uint32 }

// Parse parses src, naming it file in errors. A syntax error comes back as a positioned *Error.
func Parse(file string, src []byte) (*Document, *Error) {
	d := &Document{File: file, lines: lineStarts(src)}
	if err := toml.Unmarshal(src, &d.Data); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			line, col := de.Position()
			return nil, &Error{File: file, Line: line, Column: col,
				Message: "invalid TOML: " + strings.TrimPrefix(de.Error(), "toml: "),
				Hint:    "see https://toml.io for the syntax"}
		}
		return nil, &Error{File: file, Line: 1, Column: 1, Message: "invalid TOML: " + err.Error()}
	}
	if d.Data == nil {
		d.Data = map[string]any{}
	}
	d.at = index(src)
	return d, nil
}

func lineStarts(src []byte) []int {
	starts := []int{0}
	for i, c := range src {
		if c == '\n' {
			starts = append(starts, i+1)
		}
	}
	return starts
}

// position turns a byte offset into a 1-based line and column (columns count bytes, as Go's
// own tools do).
func (d *Document) position(off uint32) (line, col int) {
	i := sort.SearchInts(d.lines, int(off)+1) - 1
	return i + 1, int(off) - d.lines[i] + 1
}

// ErrAt reports a problem with the value at path (or, with onKey, with the key itself). A path
// that has no position of its own (a table never written out) takes its closest ancestor's.
func (d *Document) ErrAt(path string, onKey bool, msg, hint string) *Error {
	var off uint32
	if s, ok := d.lookup(path); ok {
		off = s.val
		if onKey {
			off = s.key
		}
	}
	line, col := d.position(off)
	return &Error{File: d.File, Line: line, Column: col, Key: path, Message: msg, Hint: hint}
}

// lookup finds the span of path, or of its closest ancestor that has one.
func (d *Document) lookup(path string) (span, bool) {
	for {
		if s, ok := d.at[path]; ok {
			return s, true
		}
		i := strings.LastIndexAny(path, ".[")
		if i <= 0 {
			return span{}, false
		}
		path = path[:i]
	}
}

// ValueOffset returns the byte offset at which the value of path starts in the source, for
// tools that edit a file in place; ok is false when path is not written in the file.
func (d *Document) ValueOffset(path string) (offset int, ok bool) {
	s, ok := d.at[path]
	return int(s.val), ok
}

// Where names the place of path for messages that point at another one: "hosts/a.toml:3:7".
func (d *Document) Where(path string) string {
	e := d.ErrAt(path, false, "", "")
	return fmt.Sprintf("%s:%d:%d", e.File, e.Line, e.Column)
}

// Join appends a key to a path, quoting keys that are not bare TOML keys.
func Join(path, key string) string {
	if !isBareKey(key) {
		key = strconv.Quote(key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// Elem is the path of element i of the array at path.
func Elem(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

func isBareKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		switch c := k[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// index walks the syntax tree of src (already known to be valid TOML) and records where every
// key and value path starts. TOML's own semantics (tables, arrays of tables, dotted keys, inline
// tables) decide the paths, exactly as the decoder builds them.
func index(src []byte) map[string]span {
	x := indexer{at: map[string]span{}, arrays: map[string]int{}}
	x.p.Reset(src)
	table := ""
	for x.p.NextExpression() {
		e := x.p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = x.header(e)
		case unstable.KeyValue:
			x.keyval(table, e)
		}
	}
	return x.at
}

type indexer struct {
	p      unstable.Parser
	at     map[string]span
	arrays map[string]int // arrays of tables seen so far, by path: how many elements
}

func (x *indexer) offset(r unstable.Range) uint32 { return r.Offset }

func (x *indexer) mark(path string, key, val uint32) {
	if _, ok := x.at[path]; !ok {
		x.at[path] = span{key: key, val: val}
	}
}

// header resolves a [table] or [[array]] header to the path its key/values belong to.
func (x *indexer) header(e *unstable.Node) string {
	path := ""
	it := e.Key()
	for it.Next() {
		k := it.Node()
		off := x.offset(k.Raw)
		path = Join(path, string(k.Data))
		x.mark(path, off, off)
		last := it.IsLast()
		if n, ok := x.arrays[path]; ok && !last {
			path = Elem(path, n-1) // a sub-table of the latest element
		}
		if last && e.Kind == unstable.ArrayTable {
			n := x.arrays[path]
			x.arrays[path] = n + 1
			path = Elem(path, n)
			x.mark(path, off, off)
		}
	}
	return path
}

func (x *indexer) keyval(base string, kv *unstable.Node) {
	path := base
	var off uint32
	it := kv.Key()
	for it.Next() {
		k := it.Node()
		off = x.offset(k.Raw)
		path = Join(path, string(k.Data))
		x.mark(path, off, off)
	}
	x.value(path, off, kv.Value())
}

func (x *indexer) value(path string, key uint32, v *unstable.Node) {
	val := key
	if v.Kind != unstable.Array { // arrays carry no range of their own
		val = x.offset(v.Raw)
	}
	x.at[path] = span{key: key, val: val}
	switch v.Kind {
	case unstable.Array:
		i := 0
		it := v.Children()
		for it.Next() {
			c := it.Node()
			if c.Kind == unstable.Comment {
				continue
			}
			at := val
			if c.Kind != unstable.Array {
				at = x.offset(c.Raw)
			}
			x.value(Elem(path, i), at, c)
			i++
		}
	case unstable.InlineTable:
		it := v.Children()
		for it.Next() {
			if c := it.Node(); c.Kind == unstable.KeyValue {
				x.keyval(path, c)
			}
		}
	}
}
