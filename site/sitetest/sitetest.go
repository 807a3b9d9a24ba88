// Package sitetest writes site directories for tests.
package sitetest

import (
	"os"
	"path/filepath"
	"testing"
)

// Write writes files (slash paths relative to dir: content) into dir, making the directories
// they need.
func Write(tb testing.TB, dir string, files map[string]string) {
	tb.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}
