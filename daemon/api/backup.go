package api

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"time"
)

// Archive is a backup ready to be written: see Config.Backup.
type Archive interface {
	// Write writes the archive to w.
	Write(ctx context.Context, w io.Writer) error
	// Close drops what the archive holds on to.
	Close() error
}

// ErrorAnswer is the body of the API's JSON errors.
type ErrorAnswer struct {
	Error string `json:"error"`
}

// BackupType is the media type of a backup archive: a zstd-compressed tar stream.
const BackupType = "application/zstd"

// backup streams an archive of the appliance. The archive holds the site and the token hashes,
// so it goes to the appliance itself only (a loopback peer): cairn appliance backup runs
// there. An archive cut short by a failure is told by its missing manifest.
func (s *server) backup(w http.ResponseWriter, r *http.Request) {
	if !loopbackPeer(r.RemoteAddr) {
		writeError(w, http.StatusForbidden, "backups hold the site and token hashes and are served to the appliance itself only: run cairn appliance backup on the appliance (it asks 127.0.0.1), then copy the file")
		return
	}
	if s.Backup == nil {
		writeError(w, http.StatusNotFound, "this daemon converges no site (site_dir is empty): there is nothing to back up")
		return
	}
	start := time.Now()
	a, err := s.Backup(r.Context())
	if err != nil {
		s.Log.Error("backup", "err", err)
		writeError(w, http.StatusInternalServerError, "taking a backup: "+err.Error())
		return
	}
	defer a.Close()
	w.Header().Set("Content-Type", BackupType)
	w.Header().Set("Content-Disposition", `attachment; filename="cairn-backup.tar.zst"`)
	if err := a.Write(r.Context(), w); err != nil {
		s.Log.Error("backup cut short", "err", err)
		return
	}
	s.Log.Info("backup served", "duration", time.Since(start).Round(time.Millisecond))
}

// loopbackPeer reports whether the peer at addr (host:port) is this host, by a loopback address.
func loopbackPeer(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(ErrorAnswer{Error: msg})
}
