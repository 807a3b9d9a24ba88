package state

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestSnapshot: a snapshot writes the file as of its commit while writes go on, and the file
// it writes opens with what the snapshot read.
func TestSnapshot(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := Open(filepath.Join(dir, "state.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	put := func(name string) error {
		return st.Update(ctx, func(tx Tx) error {
			if err := tx.PutHost(Host{Name: name, Phase: Pending}); err != nil {
				return err
			}
			return tx.Append(Event{Host: name, Kind: "host.added", Message: name})
		})
	}
	if err := put("a"); err != nil {
		t.Fatal(err)
	}
	sn, err := st.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	// A write after the snapshot is not in it. It may wait for the snapshot to end: a writer
	// that grows the file waits for every read transaction.
	wrote := make(chan error, 1)
	go func() { wrote <- put("b") }()
	var first bytes.Buffer
	if n, err := sn.WriteTo(&first); err != nil || n != sn.Size() {
		t.Fatalf("WriteTo = %d, %v; Size = %d", n, err, sn.Size())
	}
	var again bytes.Buffer
	if _, err := sn.WriteTo(&again); err != nil || !bytes.Equal(first.Bytes(), again.Bytes()) {
		t.Errorf("two copies of one snapshot differ (%v)", err)
	}
	var seen []Host
	if err := sn.View(func(tx Tx) (err error) { seen, err = tx.Hosts(); return err }); err != nil || len(seen) != 1 {
		t.Errorf("the snapshot's hosts = %v, %v; want a alone", seen, err)
	}
	if hosts, events, last := sn.Count(); hosts != 1 || events != 1 || last != 1 {
		t.Errorf("Count() = %d hosts, %d events up to %d; want 1, 1, 1", hosts, events, last)
	}
	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sn.Close(); err != nil {
		t.Errorf("a second Close = %v", err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}

	copyPath := filepath.Join(dir, "copy.db")
	if err := os.WriteFile(copyPath, first.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	cp, err := Open(copyPath, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	err = cp.View(ctx, func(tx Tx) error {
		hosts, err := tx.Hosts()
		if err != nil {
			return err
		}
		events, err := tx.Events(0, 0)
		if err != nil {
			return err
		}
		if len(hosts) != 1 || hosts[0].Name != "a" || len(events) != 1 || events[0].Seq != 1 {
			t.Errorf("the copy holds hosts %v and events %v, want a and its one event", hosts, events)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
