package boot

import (
	"errors"
	"net/http"
	"os"
	"time"

	"github.com/cairn-appliance/cairn/airgap"
)

// netboot serves a kernel or initramfs (any netboot asset) of the store.
func (s *server) netboot(w http.ResponseWriter, r *http.Request) { s.asset(w, r, "") }

// ipxeBinary serves an iPXE binary of the store, for firmware that boots over HTTP.
func (s *server) ipxeBinary(w http.ResponseWriter, r *http.Request) {
	s.asset(w, r, airgap.MediaTypeNetbootPrefix+string(airgap.NetbootIPXE))
}

// asset serves the netboot artifact named in the path from its blob, answering Range and
// conditional requests (its digest is its ETag). mediaType, when set, is the only kind served.
func (s *server) asset(w http.ResponseWriter, r *http.Request, mediaType string) {
	name := r.PathValue("name")
	_, p, err := s.Content.Find(airgap.KindNetboot, name)
	if err == nil && mediaType != "" && p.MediaType != mediaType {
		err = airgap.ErrNoArtifact
	}
	if errors.Is(err, airgap.ErrNoArtifact) {
		http.Error(w, "no netboot asset named "+name+" in the store", http.StatusNotFound)
		return
	}
	if err != nil {
		s.Log.Error("netboot asset", "name", name, "err", err)
		http.Error(w, "reading the store: "+err.Error(), http.StatusInternalServerError)
		return
	}
	f, err := os.Open(p.Path)
	if err != nil {
		s.Log.Error("netboot asset", "name", name, "err", err)
		http.Error(w, "reading the store: "+err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"`+p.Digest.String()+`"`)
	w.Header().Set("Docker-Content-Digest", p.Digest.String())
	// Blobs are content-addressed: the modification time says nothing, the ETag everything.
	http.ServeContent(w, r, name, time.Time{}, f)
}
