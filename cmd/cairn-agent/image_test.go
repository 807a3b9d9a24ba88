package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestImageCommand(t *testing.T) {
	img := bytes.Repeat([]byte("cairn image "), 300_000) // 3.6 MB
	sum := sha256.Sum256(img)
	hexSum := hex.EncodeToString(sum[:])
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "image.raw", time.Unix(0, 0), bytes.NewReader(img))
	}))
	defer srv.Close()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"writes", []string{"write", srv.URL, "DISK", "--sha256", hexSum}, 0, "wrote " + srv.URL + " to "},
		{"flags first", []string{"write", "--sha256=sha256:" + hexSum, "--format", "raw", srv.URL, "DISK"}, 0, "sha256:" + hexSum},
		{"wrong digest", []string{"write", srv.URL, "DISK", "--sha256", strings.Repeat("0", 64)}, 1, "want sha256:000"},
		{"no digest", []string{"write", srv.URL, "DISK"}, 2, "--sha256: required"},
		{"bad digest", []string{"write", srv.URL, "DISK", "--sha256", "abc"}, 2, "not 64 hex digits"},
		{"bad format", []string{"write", srv.URL, "DISK", "--sha256", hexSum, "--format", "qcow3"}, 2, "--format"},
		{"unknown flag", []string{"write", srv.URL, "DISK", "--sha256", hexSum, "--fast"}, 2, "flag provided but not defined"},
		{"one argument", []string{"write", srv.URL, "--sha256", hexSum}, 2, "want URL and DEVICE"},
		{"no subcommand", []string{srv.URL}, 2, "usage: cairn-agent image write"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			disk := filepath.Join(t.TempDir(), "disk.img")
			args := append([]string(nil), tc.args...)
			for i, a := range args {
				if a == "DISK" {
					args[i] = disk
				}
			}
			var out bytes.Buffer
			code := imageCommand(context.Background(), args, &out)
			if code != tc.code || !strings.Contains(out.String(), tc.want) {
				t.Fatalf("cairn-agent image %q = %d, want %d with %q; said:\n%s", args, code, tc.code, tc.want, out.String())
			}
			if code == 0 {
				got, err := os.ReadFile(disk)
				if err != nil || !bytes.Equal(got, img) {
					t.Errorf("the disk does not hold the image (%v)", err)
				}
			}
		})
	}
}
