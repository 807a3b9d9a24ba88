// Package journal is a log/slog handler for the systemd journal: each record becomes one
// journal entry whose attributes are fields (site_generation=3 becomes SITE_GENERATION=3), so
// `journalctl -u cairn HOST=web-01` finds a host's lines. Logger picks it when the daemon's
// stderr is connected to the journal, and a plain text handler otherwise.
package journal

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/coreos/go-systemd/v22/journal"
)

// sendFunc delivers one entry; journal.Send in production.
type sendFunc func(message string, priority journal.Priority, vars map[string]string) error

// Handler writes slog records to the journal.
type Handler struct {
	level  slog.Leveler
	attrs  []slog.Attr
	groups []string
	send   sendFunc
}

// NewHandler returns a handler that sends records at level and above to the journal.
func NewHandler(level slog.Leveler) *Handler {
	return &Handler{level: level, send: journal.Send}
}

// Logger returns a logger for the daemon: to the journal when stderr is the journal's stream
// (the daemon runs under systemd), else text lines to w.
func Logger(w io.Writer, level slog.Leveler) *slog.Logger {
	if ok, err := journal.StderrIsJournalStream(); err == nil && ok {
		return slog.New(NewHandler(level))
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// Enabled implements slog.Handler.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

// Handle implements slog.Handler.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	vars := map[string]string{"SYSLOG_IDENTIFIER": "cairn"}
	var text strings.Builder
	text.WriteString(r.Message)
	var add func(prefix []string, a slog.Attr)
	add = func(prefix []string, a slog.Attr) {
		a.Value = a.Value.Resolve()
		if a.Equal(slog.Attr{}) {
			return
		}
		if a.Value.Kind() == slog.KindGroup {
			for _, g := range a.Value.Group() {
				add(append(slices.Clone(prefix), a.Key), g)
			}
			return
		}
		key := strings.Join(append(slices.Clone(prefix), a.Key), "_")
		vars[FieldName(key)] = a.Value.String()
		fmt.Fprintf(&text, " %s=%s", key, quote(a.Value.String()))
	}
	for _, a := range h.attrs {
		add(h.groups, a)
	}
	r.Attrs(func(a slog.Attr) bool {
		add(h.groups, a)
		return true
	})
	return h.send(text.String(), priority(r.Level), vars)
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(slices.Clone(h.attrs), attrs...)
	return &c
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	c := *h
	c.groups = append(slices.Clone(h.groups), name)
	return &c
}

// FieldName turns an attribute key into a journal field name: upper case letters, digits and
// '_', not starting with '_' or a digit.
func FieldName(key string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(key) {
		if r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	s := strings.TrimLeft(b.String(), "_")
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		s = "F_" + s
	}
	return s
}

func quote(s string) string {
	if strings.ContainsAny(s, " \"=") {
		return fmt.Sprintf("%q", s)
	}
	return s
}

func priority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	}
	return journal.PriDebug
}
