package state

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cairn-appliance/cairn/site"
)

// stores opens one of each implementation, so that every test runs against both.
func stores(t *testing.T, retention int) map[string]Store {
	t.Helper()
	b, err := Open(filepath.Join(t.TempDir(), "state.db"), Options{Retention: retention})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return map[string]Store{"bolt": b, "memory": NewMemory(retention)}
}

func forEach(t *testing.T, retention int, fn func(t *testing.T, s Store)) {
	for name, s := range stores(t, retention) {
		t.Run(name, func(t *testing.T) { fn(t, s) })
	}
}

var ctx = context.Background()

func TestHostsRoundTrip(t *testing.T) {
	forEach(t, 0, func(t *testing.T, s Store) {
		now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		err := s.Update(ctx, func(tx Tx) error {
			for _, n := range []string{"web-2", "db-1", "web-1"} {
				if err := tx.PutHost(Host{Name: n, MAC: "52:54:00:00:00:01", Phase: Pending, Updated: now}); err != nil {
					return err
				}
			}
			// Reads inside a transaction see its writes.
			if _, ok, _ := tx.Host("db-1"); !ok {
				return errors.New("a write is not visible in its own transaction")
			}
			return tx.DeleteHost("web-2")
		})
		if err != nil {
			t.Fatal(err)
		}
		err = s.View(ctx, func(tx Tx) error {
			hosts, err := tx.Hosts()
			if err != nil {
				return err
			}
			if len(hosts) != 2 || hosts[0].Name != "db-1" || hosts[1].Name != "web-1" {
				return fmt.Errorf("Hosts() = %+v, want db-1 and web-1 in order", hosts)
			}
			h, ok, err := tx.Host("web-1")
			if err != nil || !ok || h.Phase != Pending || !h.Updated.Equal(now) {
				return fmt.Errorf("Host(web-1) = %+v, %v, %w", h, ok, err)
			}
			if err := tx.PutHost(Host{Name: "x"}); !errors.Is(err, ErrReadOnly) {
				return fmt.Errorf("PutHost in View = %w, want ErrReadOnly", err)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	})
}

func TestUpdateIsAllOrNothing(t *testing.T) {
	forEach(t, 0, func(t *testing.T, s Store) {
		boom := errors.New("boom")
		err := s.Update(ctx, func(tx Tx) error {
			// Every write must take, and be seen inside the transaction, for its undoing to
			// mean anything.
			if err := tx.PutHost(Host{Name: "a", Phase: Pending}); err != nil {
				return err
			}
			if err := tx.SetGeneration(Generation{Applied: 7}); err != nil {
				return err
			}
			if err := tx.Append(Event{Kind: "x", Message: "y"}); err != nil {
				return err
			}
			if _, ok, err := tx.Host("a"); err != nil || !ok {
				return fmt.Errorf("the transaction does not see its own host: %v, %v", ok, err)
			}
			if g, err := tx.Generation(); err != nil || g.Applied != 7 {
				return fmt.Errorf("the transaction does not see its own generation: %+v, %v", g, err)
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Update() = %v, want boom", err)
		}
		err = s.View(ctx, func(tx Tx) error {
			hosts, err := tx.Hosts()
			if err != nil {
				return err
			}
			g, err := tx.Generation()
			if err != nil {
				return err
			}
			evs, err := tx.Events(0, 0)
			if err != nil {
				return err
			}
			if len(hosts) != 0 || g.Applied != 0 || len(evs) != 0 {
				t.Errorf("a failed transaction left hosts %v, generation %+v, events %v", hosts, g, evs)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("reading after the failed transaction: %v", err)
		}
	})
}

func TestEventsAndRetention(t *testing.T) {
	forEach(t, 5, func(t *testing.T, s Store) {
		for i := range 12 {
			host := []string{"", "h1", "h10"}[i%3]
			if err := s.Update(ctx, func(tx Tx) error { return tx.Append(Event{Kind: "k", Host: host, Message: fmt.Sprint(i)}) }); err != nil {
				t.Fatal(err)
			}
		}
		_ = s.View(ctx, func(tx Tx) error {
			all, _ := tx.Events(0, 0)
			if len(all) != 5 || all[0].Seq != 8 || all[4].Seq != 12 || all[4].Message != "11" || all[0].Time.IsZero() {
				t.Errorf("events kept = %+v, want seq 8..12", all)
			}
			page, _ := tx.Events(9, 2)
			if len(page) != 2 || page[0].Seq != 10 || page[1].Seq != 11 {
				t.Errorf("Events(9, 2) = %+v, want seq 10 and 11", page)
			}
			latest, _ := tx.Latest(2, "")
			if len(latest) != 2 || latest[0].Seq != 11 || latest[1].Seq != 12 {
				t.Errorf("Latest(2) = %+v, want seq 11 and 12", latest)
			}
			if more, _ := tx.Latest(100, ""); len(more) != 5 || more[0].Seq != 8 {
				t.Errorf("Latest(100) = %+v, want the 5 kept, from seq 8", more)
			}
			if mine, _ := tx.Latest(2, "h1"); len(mine) != 2 || mine[0].Seq != 8 || mine[1].Seq != 11 {
				t.Errorf("Latest(2, h1) = %+v, want seq 8 and 11", mine)
			}
			if none, _ := tx.Latest(2, "h"); len(none) != 0 {
				t.Errorf("Latest(2, h) = %+v, want none: no event names host h", none)
			}
			return nil
		})
	})
}

func TestSubscribeMergesForSlowReaders(t *testing.T) {
	forEach(t, 0, func(t *testing.T, s Store) {
		changes, cancel := s.Subscribe()
		defer cancel()
		for _, n := range []string{"b", "a", "c"} {
			if err := s.Update(ctx, func(tx Tx) error { return tx.PutHost(Host{Name: n}) }); err != nil {
				t.Fatal(err)
			}
		}
		_ = s.Update(ctx, func(tx Tx) error { return tx.SetGeneration(Generation{Attempted: 1}) })
		select {
		case c := <-changes:
			if strings.Join(c.Hosts, ",") != "a,b,c" || !c.Generation {
				t.Errorf("merged change = %+v, want hosts a,b,c and the generation", c)
			}
		case <-time.After(time.Second):
			t.Fatal("no change delivered")
		}
		select {
		case c := <-changes:
			t.Errorf("an extra change %+v after the merged one", c)
		default:
		}
	})
}

func TestSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Update(ctx, func(tx Tx) error { return tx.PutHost(Host{Name: "kept"}) })
	_ = s.Close()

	// A file from a newer cairn is refused, and left as it is.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint64(nil, SchemaVersion+1))
	})
	_ = db.Close()
	if _, err := Open(path, Options{}); err == nil || !strings.Contains(err.Error(), "upgrade cairn") {
		t.Errorf("Open(newer schema) = %v, want a refusal", err)
	}

	// A file without a schema (version 0) is migrated, keeping what it holds.
	db, _ = bolt.Open(path, 0o600, nil)
	_ = db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keySchema) })
	_ = db.Close()
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatalf("Open(schema 0) = %v", err)
	}
	defer s.Close()
	_ = s.View(ctx, func(tx Tx) error {
		if _, ok, _ := tx.Host("kept"); !ok {
			t.Error("migration lost a host")
		}
		return nil
	})
}

// TestSchema1Migrates opens a file of schema 1, which had no index of events by host, and
// checks that the migration builds it.
func TestSchema1Migrates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		_ = s.Update(ctx, func(tx Tx) error { return tx.Append(Event{Kind: "k", Host: []string{"a", "b", ""}[i%3]}) })
	}
	_ = s.Close()
	downgrade(t, path, bucketHostEvents, 1)
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatalf("Open(schema 1) = %v", err)
	}
	defer s.Close()
	_ = s.View(ctx, func(tx Tx) error {
		if evs, err := tx.Latest(10, "b"); err != nil || len(evs) != 2 || evs[0].Seq != 2 || evs[1].Seq != 5 {
			t.Errorf("after migrating, Latest(10, b) = %+v, %v; want seq 2 and 5", evs, err)
		}
		return nil
	})
}

func TestReadOnlyOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Update(ctx, func(tx Tx) error { return tx.PutHost(Host{Name: "a"}) })
	_ = s.Close()
	ro, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if err := ro.Update(ctx, func(Tx) error { return nil }); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Update on a read-only store = %v, want ErrReadOnly", err)
	}
}

// TestRetentionDropsIndex: events dropped by retention leave the index of events by host too.
func TestRetentionDropsIndex(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "state.db"), Options{Retention: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for range 10 {
		_ = s.Update(ctx, func(tx Tx) error { return tx.Append(Event{Kind: "k", Host: "a"}) })
	}
	_ = s.db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketHostEvents).Stats().KeyN; n != 3 {
			t.Errorf("the index holds %d entries, want the 3 events kept", n)
		}
		return nil
	})
}

func TestLeases(t *testing.T) {
	forEach(t, 0, func(t *testing.T, s Store) {
		mac := func(last byte) site.MAC { return site.MAC{0x52, 0x54, 0, 0, 0, last} }
		exp := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		changes, cancel := s.Subscribe()
		defer cancel()
		err := s.Update(ctx, func(tx Tx) error {
			for _, l := range []Lease{
				{MAC: mac(2), IP: netip.MustParseAddr("192.0.2.101"), Expiry: exp, Hostname: "b"},
				{MAC: mac(1), IP: netip.MustParseAddr("192.0.2.100"), Expiry: exp},
				{MAC: mac(3), IP: netip.MustParseAddr("192.0.2.102"), Expiry: exp},
			} {
				if err := tx.PutLease(l); err != nil {
					return err
				}
			}
			if l, ok, err := tx.Lease(mac(2)); err != nil || !ok || l.Hostname != "b" {
				return fmt.Errorf("a lease written is not visible in its own transaction: %+v, %v, %w", l, ok, err)
			}
			return tx.DeleteLease(mac(3))
		})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case c := <-changes:
			if !c.Leases {
				t.Errorf("change = %+v, want Leases", c)
			}
		case <-time.After(time.Second):
			t.Error("no change delivered for leases")
		}
		_ = s.View(ctx, func(tx Tx) error {
			all, err := tx.Leases()
			if err != nil || len(all) != 2 || all[0].MAC != mac(1) || all[1].MAC != mac(2) {
				t.Errorf("Leases() = %+v, %v; want the leases of ...:01 and ...:02 in order", all, err)
			}
			l, ok, err := tx.Lease(mac(2))
			if err != nil || !ok || l.IP != netip.MustParseAddr("192.0.2.101") || !l.Expiry.Equal(exp) || l.Hostname != "b" {
				t.Errorf("Lease(...:02) = %+v, %v, %v", l, ok, err)
			}
			if _, ok, _ := tx.Lease(mac(3)); ok {
				t.Error("a deleted lease is still there")
			}
			if err := tx.PutLease(Lease{MAC: mac(4), IP: netip.MustParseAddr("192.0.2.1")}); !errors.Is(err, ErrReadOnly) {
				t.Errorf("PutLease in View = %v, want ErrReadOnly", err)
			}
			return nil
		})
		// A lease that could not be read back is refused.
		for _, bad := range []Lease{
			{MAC: site.MAC{}, IP: netip.MustParseAddr("192.0.2.1")},
			{MAC: site.MAC{1, 0, 0x5e, 0, 0, 1}, IP: netip.MustParseAddr("192.0.2.1")},
			{MAC: mac(9), IP: netip.MustParseAddr("2001:db8::1")},
			{MAC: mac(9)},
		} {
			if err := s.Update(ctx, func(tx Tx) error { return tx.PutLease(bad) }); err == nil {
				t.Errorf("PutLease(%+v) = nil, want an error", bad)
			}
		}
	})
}

// TestSchema2Migrates opens a file of schema 2, which had no leases, and checks that the
// migration adds their bucket and keeps the rest.
func TestSchema2Migrates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Update(ctx, func(tx Tx) error { return tx.PutHost(Host{Name: "kept"}) })
	_ = s.Close()
	downgrade(t, path, bucketLeases, 2)
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatalf("Open(schema 2) = %v", err)
	}
	defer s.Close()
	l := Lease{MAC: site.MAC{0x52, 0x54, 0, 0, 0, 1}, IP: netip.MustParseAddr("192.0.2.100"), Expiry: time.Now().UTC()}
	if err := s.Update(ctx, func(tx Tx) error { return tx.PutLease(l) }); err != nil {
		t.Fatalf("PutLease after migrating: %v", err)
	}
	_ = s.View(ctx, func(tx Tx) error {
		if _, ok, _ := tx.Host("kept"); !ok {
			t.Error("the migration lost a host")
		}
		if all, err := tx.Leases(); err != nil || len(all) != 1 {
			t.Errorf("after migrating, Leases() = %+v, %v; want the one written", all, err)
		}
		return nil
	})
}

// downgrade makes the state file at path one of an older schema: without the bucket that
// schema lacks, and saying so.
func downgrade(t *testing.T, path string, bucket []byte, schema uint64) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucket); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint64(nil, schema))
	})
	if err != nil {
		t.Fatalf("making the file schema %d: %v", schema, err)
	}
}
