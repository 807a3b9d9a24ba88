package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestHostCommandUsage(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "agent.json")
	for _, tc := range []struct {
		args []string
		code int
		say  string
	}{
		{nil, 2, "usage: cairn-agent host run"},
		{[]string{"bogus"}, 2, `unknown subcommand "bogus"`},
		{[]string{"status", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"run", "--nope"}, 2, "flag provided but not defined"},
		// A file named by --config is read before anything else happens.
		{[]string{"run", "--config", missing}, 1, "no such file"},
	} {
		var out, errb bytes.Buffer
		if code := hostCommand(context.Background(), tc.args, &out, &errb); code != tc.code || !strings.Contains(errb.String(), tc.say) {
			t.Errorf("host %q = %d, %q; want %d and %q", tc.args, code, errb.String(), tc.code, tc.say)
		}
	}
}
