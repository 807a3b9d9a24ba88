package journal

import (
	"log/slog"
	"testing"

	"github.com/coreos/go-systemd/v22/journal"
)

type entry struct {
	msg  string
	pri  journal.Priority
	vars map[string]string
}

func TestFields(t *testing.T) {
	var got []entry
	h := NewHandler(slog.LevelInfo)
	h.send = func(msg string, pri journal.Priority, vars map[string]string) error {
		got = append(got, entry{msg, pri, vars})
		return nil
	}
	log := slog.New(h).With("site_generation", 3)
	log.Debug("dropped")
	log.Warn("host failed", "host", "web-01", "phase", "failed", slog.Group("disk", "path", "/dev/sda"))
	if len(got) != 1 {
		t.Fatalf("got %d entries, want 1 (debug is below the level)", len(got))
	}
	e := got[0]
	want := map[string]string{"SITE_GENERATION": "3", "HOST": "web-01", "PHASE": "failed", "DISK_PATH": "/dev/sda", "SYSLOG_IDENTIFIER": "cairn"}
	for k, v := range want {
		if e.vars[k] != v {
			t.Errorf("field %s = %q, want %q", k, e.vars[k], v)
		}
	}
	if e.pri != journal.PriWarning || e.msg != "host failed site_generation=3 host=web-01 phase=failed disk_path=/dev/sda" {
		t.Errorf("entry = %q at %d", e.msg, e.pri)
	}
}

func TestFieldName(t *testing.T) {
	for in, want := range map[string]string{"host": "HOST", "site.generation": "SITE_GENERATION", "_x": "X", "9lives": "F_9LIVES", "": "F_"} {
		if got := FieldName(in); got != want {
			t.Errorf("FieldName(%q) = %q, want %q", in, got, want)
		}
	}
}
