package state

import (
	"fmt"
	"path/filepath"
	"testing"
)

func hostNames(hosts []Host) []string {
	var out []string
	for _, h := range hosts {
		out = append(out, h.Name)
	}
	return out
}

func TestHostsByMAC(t *testing.T) {
	forEach(t, 0, func(t *testing.T, s Store) {
		const m1, m2 = "52:54:00:00:00:01", "52:54:00:00:00:02"
		err := s.Update(ctx, func(tx Tx) error {
			for _, h := range []Host{{Name: "web-1", MAC: m1, Phase: Pending}, {Name: "discovered-525400000001", MAC: m1, Phase: Discovered}, {Name: "db-1", MAC: m2}} {
				if err := tx.PutHost(h); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		check := func(tx Tx, mac, want string) error {
			hosts, err := HostsByMAC(tx, mac)
			if err != nil {
				return err
			}
			if got := fmt.Sprint(hostNames(hosts)); got != want {
				return fmt.Errorf("HostsByMAC(%s) = %s, want %s", mac, got, want)
			}
			return nil
		}
		for i := range 2 { // the second read starts from the hosts the first one decoded
			if err := s.View(ctx, func(tx Tx) error { return check(tx, m1, "[discovered-525400000001 web-1]") }); err != nil {
				t.Fatalf("read %d: %v", i, err)
			}
		}
		// A writer sees its own writes: a host that changed MAC, one deleted, one added.
		err = s.Update(ctx, func(tx Tx) error {
			if err := tx.PutHost(Host{Name: "db-1", MAC: m1}); err != nil {
				return err
			}
			if err := tx.DeleteHost("discovered-525400000001"); err != nil {
				return err
			}
			if err := tx.PutHost(Host{Name: "app-1", MAC: m2}); err != nil {
				return err
			}
			return errorsJoin(check(tx, m1, "[db-1 web-1]"), check(tx, m2, "[app-1]"), check(tx, "52:54:00:00:00:03", "[]"))
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.View(ctx, func(tx Tx) error { return errorsJoin(check(tx, m1, "[db-1 web-1]"), check(tx, m2, "[app-1]")) }); err != nil {
			t.Fatal(err)
		}
	})
}

func errorsJoin(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// TestHostsByMACReopened looks a MAC up in a store just opened, whose hosts nothing decoded
// yet, in a writer first.
func TestHostsByMACReopened(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	b, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Update(ctx, func(tx Tx) error { return tx.PutHost(Host{Name: "a", MAC: "52:54:00:00:00:01"}) }); err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
	if b, err = Open(path, Options{}); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	err = b.Update(ctx, func(tx Tx) error {
		if err := tx.PutHost(Host{Name: "b", MAC: "52:54:00:00:00:01"}); err != nil {
			return err
		}
		hosts, err := HostsByMAC(tx, "52:54:00:00:00:01")
		if err == nil && fmt.Sprint(hostNames(hosts)) != "[a b]" {
			err = fmt.Errorf("HostsByMAC in a fresh writer = %v, want [a b]", hostNames(hosts))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkHostsByMAC looks one MAC up among 10,000 hosts.
func BenchmarkHostsByMAC(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "state.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.Update(ctx, func(tx Tx) error {
		for i := range 10000 {
			if err := tx.PutHost(Host{Name: fmt.Sprintf("h%05d", i), MAC: fmt.Sprintf("52:54:00:00:%02x:%02x", i>>8, i&0xff)}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		_ = s.View(ctx, func(tx Tx) error {
			hosts, err := HostsByMAC(tx, "52:54:00:00:27:0f")
			if err == nil && len(hosts) != 1 {
				b.Fatalf("found %d hosts", len(hosts))
			}
			return err
		})
	}
}
