package host

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/cairn-appliance/cairn/agent/api"
)

// The agent's state files, in Paths.StateDir. Each is written whole (fsync, then rename).
const (
	currentFile  = "current.json"  // the Desired applied and committed last
	previousFile = "previous.json" // the one committed before it
	attemptFile  = "attempt.json"  // the last attempt's outcome (an Attempt)
	pendingFile  = "pending.json"  // a generation being applied (a pending): gone once committed or rolled back
)

// Attempt is the outcome of the last generation tried.
type Attempt struct {
	Generation int64     `json:"generation"`
	Failed     bool      `json:"failed,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Time       time.Time `json:"time,omitzero"`
	// Retryable says the attempt failed before anything on the host changed (a pull), so
	// trying it again disturbs nothing.
	Retryable bool `json:"retryable,omitempty"`
}

// pending marks a generation whose units the host may be running partly: it is written
// before the first unit is stopped and removed once the generation is committed or rolled
// back. Found at start, it means the agent stopped half-way; Recover rolls back.
type pending struct {
	Desired *api.Desired `json:"desired"`
	// Touched are the units the attempt stops, replaces or adds.
	Touched []string `json:"touched"`
}

type state struct {
	current, previous *api.Desired
	attempt           Attempt
	pending           *pending
}

func loadState(dir string) (state, error) {
	var st state
	var err error
	if st.current, err = readJSON[api.Desired](filepath.Join(dir, currentFile)); err != nil {
		return st, err
	}
	if st.previous, err = readJSON[api.Desired](filepath.Join(dir, previousFile)); err != nil {
		return st, err
	}
	a, err := readJSON[Attempt](filepath.Join(dir, attemptFile))
	if err != nil {
		return st, err
	}
	if a != nil {
		st.attempt = *a
	}
	if st.pending, err = readJSON[pending](filepath.Join(dir, pendingFile)); err != nil {
		return st, err
	}
	return st, nil
}

// readJSON reads a state file; a missing one is nil.
func readJSON[T any](path string) (*T, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	v := new(T)
	if err := json.Unmarshal(b, v); err != nil {
		return nil, fmt.Errorf("reading the agent's state %s: %w", path, err)
	}
	return v, nil
}

// removeJSON removes a state file.
func removeJSON(dir, name string) error {
	err := os.Remove(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return syncDir(dir)
}

// writeJSON writes a state file (mode 0600: a Desired holds the containers' config files).
func writeJSON(dir, name string, v any) error {
	path := filepath.Join(dir, name)
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	// Only the state directory itself is private: /var/lib/cairn holds the config files
	// containers mount too.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil { //nolint:gosec // G301: see above
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'), 0o600)
}
