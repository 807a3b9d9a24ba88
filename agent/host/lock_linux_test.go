package host

import (
	"strings"
	"testing"
)

func TestLock(t *testing.T) {
	path := t.TempDir() + "/run/cairn-agent.lock"
	unlock, err := Lock(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Lock(path); err == nil || !strings.Contains(err.Error(), "another cairn-agent") {
		t.Errorf("a second Lock = %v, want refused", err)
	}
	unlock()
	unlock2, err := Lock(path)
	if err != nil {
		t.Errorf("Lock after unlock = %v", err)
	} else {
		unlock2()
	}
}
