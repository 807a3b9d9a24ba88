package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cairn-appliance/cairn/daemon/state"
)

// fakeArchive is an Archive that writes fixed bytes.
type fakeArchive struct {
	data   string
	closed *bool
}

func (a fakeArchive) Write(_ context.Context, w io.Writer) error {
	_, err := io.WriteString(w, a.data)
	return err
}

func (a fakeArchive) Close() error { *a.closed = true; return nil }

func backupHandler(t *testing.T, taken *int, closed *bool) http.Handler {
	t.Helper()
	h, err := New(Config{Store: state.NewMemory(0), Current: func() Current { return Current{} },
		Backup: func(context.Context) (Archive, error) {
			*taken++
			return fakeArchive{data: "archive bytes", closed: closed}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestBackupOnlyToLoopback: the archive holds the site and token hashes, so the endpoint
// serves the appliance itself only; anyone else gets 403 and a JSON error saying where to run
// the backup, and no backup is taken.
func TestBackupOnlyToLoopback(t *testing.T) {
	for _, tt := range []struct {
		peer string
		code int
	}{
		{"10.0.0.1:1234", http.StatusForbidden},
		{"192.168.1.7:40000", http.StatusForbidden},
		{"[fe80::1]:1234", http.StatusForbidden},
		{"garbage", http.StatusForbidden},
		{"127.0.0.1:1234", http.StatusOK},
		{"127.0.0.2:1234", http.StatusOK},
		{"[::1]:1234", http.StatusOK},
	} {
		taken, closed := 0, false
		h := backupHandler(t, &taken, &closed)
		req := httptest.NewRequest(http.MethodGet, "/api/v1/backup", nil)
		req.RemoteAddr = tt.peer
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tt.code {
			t.Errorf("GET /api/v1/backup from %s = %d, want %d", tt.peer, rec.Code, tt.code)
		}
		if tt.code == http.StatusForbidden {
			var e ErrorAnswer
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || !strings.Contains(e.Error, "run cairn appliance backup on the appliance") ||
				rec.Header().Get("Content-Type") != "application/json" {
				t.Errorf("403 from %s: %s %q, want a JSON error saying to run it on the appliance", tt.peer, rec.Header().Get("Content-Type"), rec.Body)
			}
			if taken != 0 {
				t.Errorf("a backup was taken for %s", tt.peer)
			}
			continue
		}
		if rec.Body.String() != "archive bytes" || rec.Header().Get("Content-Type") != BackupType || taken != 1 || !closed {
			t.Errorf("backup for %s: %q %s, taken %d, closed %v", tt.peer, rec.Body, rec.Header().Get("Content-Type"), taken, closed)
		}
	}

	// A daemon with no site has no backup to give.
	h, err := New(Config{Store: state.NewMemory(0), Current: func() Current { return Current{} }})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/api/v1/backup", nil)
	req.RemoteAddr = "127.0.0.1:1234"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "nothing to back up") {
		t.Errorf("backup from a daemon with no site = %d %s", rec.Code, rec.Body)
	}
}

func TestClientBackup(t *testing.T) {
	ctx := context.Background()
	taken, closed := 0, false
	h := backupHandler(t, &taken, &closed)
	srv := httptest.NewServer(h)
	defer srv.Close()
	var buf strings.Builder
	n, err := client(t, srv.URL).Backup(ctx, &buf)
	if err != nil || n != int64(len("archive bytes")) || buf.String() != "archive bytes" {
		t.Errorf("Backup() = %d, %v, %q", n, err, buf.String())
	}

	// Asked from elsewhere: a StatusError with the daemon's message.
	far := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.RemoteAddr = "10.0.0.1:1234"
		h.ServeHTTP(w, r)
	}))
	defer far.Close()
	_, err = client(t, far.URL).Backup(ctx, io.Discard)
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusForbidden || !strings.HasPrefix(se.Message, "backups hold the site") {
		t.Errorf("Backup() from afar = %v, want a 403 StatusError with the daemon's message", err)
	}

	// Nobody there: Unreachable says so, and the CLI reads the files instead.
	_, err = client(t, "http://127.0.0.1:1").Backup(ctx, io.Discard)
	if !Unreachable(err) || !strings.Contains(err.Error(), "is cairn daemon running") {
		t.Errorf("Backup() with no daemon = %v, want an unreachable error", err)
	}
	if Unreachable(se) {
		t.Error("Unreachable(a 403) = true")
	}
}
