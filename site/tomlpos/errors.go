package tomlpos

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem found in a TOML file. File is as the caller named it (for a site,
// relative to the site directory and slash-separated); Line and Column are 1-based. Key is the
// dotted TOML path of the value at fault ("network.cidr", "container[1].ports[0]"), empty for
// syntax errors and whole-file problems.
type Error struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Key     string `json:"key,omitempty"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}

// Error formats the problem the way compilers do, so editors and CI can jump to it:
//
//	hosts/a.toml:7:1: colour: unknown key; did you mean "color"?
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d:%d: ", e.File, e.Line, e.Column)
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	if e.Hint != "" {
		b.WriteString("; ")
		b.WriteString(e.Hint)
	}
	return b.String()
}

// Errors is a list of problems; Sort orders them by file, line and column.
type Errors []*Error

// Error lists one problem per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Sort orders the problems by file, line, column, key and message.
func (es Errors) Sort() {
	slices.SortStableFunc(es, func(a, b *Error) int {
		return cmp.Or(
			cmp.Compare(a.File, b.File),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Column, b.Column),
			cmp.Compare(a.Key, b.Key),
			cmp.Compare(a.Message, b.Message),
		)
	})
}

// ValueError is what the UnmarshalText methods of value types return: what was expected, and
// how to fix it. The decoder adds the file, position and key.
type ValueError struct {
	Msg  string
	Hint string
}

func (e *ValueError) Error() string {
	if e.Hint == "" {
		return e.Msg
	}
	return e.Msg + "; " + e.Hint
}

// Invalid returns a *ValueError with a formatted message and a hint.
func Invalid(hint, format string, args ...any) error {
	return &ValueError{Msg: fmt.Sprintf(format, args...), Hint: hint}
}
