package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/cairn-appliance/cairn/site"
)

// SchemaVersion is the layout of the state file this cairn writes. Opening an older file
// migrates it; opening a newer one is refused.
const SchemaVersion = 3

var (
	bucketMeta   = []byte("meta")
	bucketHosts  = []byte("hosts")
	bucketEvents = []byte("events")
	// bucketHostEvents indexes the events that name a host: HOST NUL SEQ, empty values.
	bucketHostEvents = []byte("host-events")
	keySchema        = []byte("schema")
	keyGen           = []byte("generation")

	// bucketLeases holds the DHCP leases: canonical MAC -> Lease as JSON.
	bucketLeases = []byte("leases")
)

// migrations[i] takes a file from schema i to i+1, inside one transaction.
var migrations = []func(*bolt.Tx) error{
	0: func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketHosts, bucketEvents} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	},
	1: func(tx *bolt.Tx) error {
		idx, err := tx.CreateBucketIfNotExists(bucketHostEvents)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
			host, err := eventHost(v)
			if err != nil || host == "" {
				return err
			}
			return idx.Put(hostEventKey(host, binary.BigEndian.Uint64(k)), nil)
		})
	},
	2: func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketLeases)
		return err
	},
}

func hostEventKey(host string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(host), 0), seq)
}

// eventHost reads the host an encoded event names.
func eventHost(v []byte) (string, error) {
	var e struct{ Host string }
	err := json.Unmarshal(v, &e)
	return e.Host, err
}

// Options tune a bbolt store.
type Options struct {
	ReadOnly  bool          // open for reading only (cairn site plan --state); another process may hold it
	Retention int           // events kept; 0 means DefaultRetention
	Timeout   time.Duration // how long to wait for another process's lock; 0 means 2s
}

// Bolt is a Store in one bbolt file.
type Bolt struct {
	db        *bolt.DB
	retention int
	readOnly  bool
	hub       hub

	// hosts is every host decoded, as some committed transaction left them: a transaction
	// that starts from that commit reads hosts from it instead of decoding thousands of JSON
	// records again. Each commit that writes hosts derives the next one from it.
	mu    sync.Mutex
	hosts *hostCache
}

// hostCache is every host as of the commit whose transaction ID is txid. It is never changed
// in place; readers share it.
type hostCache struct {
	txid  int
	hosts []Host // sorted by name
}

// findHost finds a host in a list sorted by name.
func findHost(hosts []Host, name string) (int, bool) {
	return slices.BinarySearchFunc(hosts, name, func(h Host, n string) int { return strings.Compare(h.Name, n) })
}

// with returns the cache after a transaction with the given ID wrote dirty (nil: deleted).
func (c *hostCache) with(txid int, dirty map[string]*Host) *hostCache {
	hosts := slices.Clone(c.hosts)
	for _, name := range slices.Sorted(maps.Keys(dirty)) {
		i, ok := findHost(hosts, name)
		switch h := dirty[name]; {
		case h == nil && ok:
			hosts = slices.Delete(hosts, i, i+1)
		case h != nil && ok:
			hosts[i] = *h
		case h != nil:
			hosts = slices.Insert(hosts, i, *h)
		}
	}
	return &hostCache{txid: txid, hosts: hosts}
}

// cacheAt returns the host cache if it is as of transaction txid.
func (s *Bolt) cacheAt(txid int) *hostCache {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hosts != nil && s.hosts.txid == txid {
		return s.hosts
	}
	return nil
}

// keep makes c the host cache unless a newer one is there already.
func (s *Bolt) keep(c *hostCache) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hosts == nil || s.hosts.txid < c.txid {
		s.hosts = c
	}
}

// Open opens (or creates) the state file at path and migrates it to SchemaVersion.
func Open(path string, o Options) (*Bolt, error) {
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, ReadOnly: o.ReadOnly})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("opening state %s: another process holds it (is cairn daemon running? use its API instead)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("opening state %s: %w", path, err)
	}
	s := &Bolt{db: db, retention: o.Retention, readOnly: o.ReadOnly}
	if s.retention <= 0 {
		s.retention = DefaultRetention
	}
	if err := s.migrate(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("opening state %s: %w", path, err)
	}
	return s, nil
}

func (s *Bolt) migrate() error {
	version := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		if m := tx.Bucket(bucketMeta); m != nil {
			if v := m.Get(keySchema); len(v) == 8 {
				version = int(binary.BigEndian.Uint64(v)) //nolint:gosec // written by us, small
			}
		}
		return nil
	})
	switch {
	case err != nil:
		return err
	case version > SchemaVersion:
		return fmt.Errorf("the file has schema %d, this cairn knows %d: upgrade cairn, or restore a state file it wrote", version, SchemaVersion)
	case version == SchemaVersion:
		return nil
	case s.readOnly:
		return fmt.Errorf("the file has schema %d and needs migrating to %d, which a read-only open cannot do", version, SchemaVersion)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		for v := version; v < SchemaVersion; v++ {
			if err := migrations[v](tx); err != nil {
				return fmt.Errorf("migrating schema %d to %d: %w", v, v+1, err)
			}
		}
		return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint64(nil, SchemaVersion))
	})
}

// View implements Store.
func (s *Bolt) View(ctx context.Context, fn func(Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(func(tx *bolt.Tx) error {
		return fn(&boltTx{tx: tx, retention: s.retention, store: s, cache: s.cacheAt(tx.ID())})
	})
}

// Update implements Store.
func (s *Bolt) Update(ctx context.Context, fn func(Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.readOnly {
		return ErrReadOnly
	}
	t := &boltTx{retention: s.retention, writable: true, store: s}
	var txid int // the commit's: reads that start after it see this ID
	err := s.db.Update(func(tx *bolt.Tx) error {
		txid = tx.ID()
		t.tx, t.cache = tx, s.cacheAt(txid-1) // a writer starts from the last commit
		return fn(t)
	})
	if err != nil {
		return err
	}
	if t.cache != nil {
		if len(t.dirty) == 0 {
			s.keep(&hostCache{txid: txid, hosts: t.cache.hosts})
		} else {
			s.keep(t.cache.with(txid, t.dirty))
		}
	}
	s.hub.publish(t.rec.change())
	return nil
}

// Subscribe implements Store.
func (s *Bolt) Subscribe() (<-chan Change, func()) { return s.hub.subscribe() }

// Close implements Store.
func (s *Bolt) Close() error { return s.db.Close() }

type boltTx struct {
	tx        *bolt.Tx
	retention int
	writable  bool
	rec       recorder
	store     *Bolt

	cache *hostCache       // the hosts as this transaction started, when known
	dirty map[string]*Host // what it wrote since (nil: deleted)
}

func (t *boltTx) Host(name string) (Host, bool, error) {
	if h, ok := t.dirty[name]; ok {
		if h == nil {
			return Host{}, false, nil
		}
		return *h, true, nil
	}
	if t.cache != nil {
		if i, ok := findHost(t.cache.hosts, name); ok {
			return t.cache.hosts[i], true, nil
		}
		return Host{}, false, nil
	}
	v := t.tx.Bucket(bucketHosts).Get([]byte(name))
	if v == nil {
		return Host{}, false, nil
	}
	var h Host
	if err := json.Unmarshal(v, &h); err != nil {
		return Host{}, false, fmt.Errorf("state: host %s: %w", name, err)
	}
	return h, true, nil
}

func (t *boltTx) Hosts() ([]Host, error) {
	if t.cache != nil {
		if len(t.dirty) == 0 {
			return slices.Clone(t.cache.hosts), nil
		}
		return slices.Clone(t.cache.with(0, t.dirty).hosts), nil
	}
	var hosts []Host
	err := t.tx.Bucket(bucketHosts).ForEach(func(k, v []byte) error {
		var h Host
		if err := json.Unmarshal(v, &h); err != nil {
			return fmt.Errorf("state: host %s: %w", k, err)
		}
		hosts = append(hosts, h)
		return nil
	})
	if err != nil {
		return nil, err
	}
	// bbolt iterates in key order: sorted by name. A read transaction has just read every
	// host as of its commit: keep them for the next ones.
	if !t.writable {
		t.cache = &hostCache{txid: t.tx.ID(), hosts: hosts}
		t.store.keep(t.cache)
		return slices.Clone(hosts), nil
	}
	return hosts, nil
}

func (t *boltTx) PutHost(h Host) error {
	if !t.writable {
		return ErrReadOnly
	}
	if h.Name == "" {
		return errors.New("state: a host needs a name")
	}
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if err := t.tx.Bucket(bucketHosts).Put([]byte(h.Name), b); err != nil {
		return err
	}
	t.rec.host(h.Name)
	if t.cache != nil {
		// Keep what a later read decodes, not the caller's value (whose slices it may reuse).
		var stored Host
		if err := json.Unmarshal(b, &stored); err != nil {
			return err
		}
		t.written(h.Name, &stored)
	}
	return nil
}

// written notes a host written (nil: deleted) for reads later in the transaction and the
// cache after it.
func (t *boltTx) written(name string, h *Host) {
	if t.dirty == nil {
		t.dirty = map[string]*Host{}
	}
	t.dirty[name] = h
}

func (t *boltTx) DeleteHost(name string) error {
	if !t.writable {
		return ErrReadOnly
	}
	if err := t.tx.Bucket(bucketHosts).Delete([]byte(name)); err != nil {
		return err
	}
	t.rec.host(name)
	if t.cache != nil {
		t.written(name, nil)
	}
	return nil
}

func (t *boltTx) Generation() (Generation, error) {
	var g Generation
	v := t.tx.Bucket(bucketMeta).Get(keyGen)
	if v == nil {
		return g, nil
	}
	return g, json.Unmarshal(v, &g)
}

func (t *boltTx) SetGeneration(g Generation) error {
	if !t.writable {
		return ErrReadOnly
	}
	b, err := json.Marshal(g)
	if err != nil {
		return err
	}
	t.rec.ch.Generation = true
	return t.tx.Bucket(bucketMeta).Put(keyGen, b)
}

func (t *boltTx) Append(e Event) error {
	if !t.writable {
		return ErrReadOnly
	}
	b := t.tx.Bucket(bucketEvents)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	e.Seq = seq
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := b.Put(binary.BigEndian.AppendUint64(nil, seq), v); err != nil {
		return err
	}
	idx := t.tx.Bucket(bucketHostEvents)
	if e.Host != "" {
		if err := idx.Put(hostEventKey(e.Host, seq), nil); err != nil {
			return err
		}
	}
	t.rec.ch.Events = true
	// Retention: drop what is older than the newest `retention` events.
	if seq > uint64(t.retention) { //nolint:gosec // retention is positive
		c := b.Cursor()
		limit := seq - uint64(t.retention) //nolint:gosec // retention is positive
		for k, v := c.First(); k != nil && binary.BigEndian.Uint64(k) <= limit; k, v = c.First() {
			host, err := eventHost(v)
			if err != nil {
				return fmt.Errorf("state: event %d: %w", binary.BigEndian.Uint64(k), err)
			}
			if host != "" {
				if err := idx.Delete(hostEventKey(host, binary.BigEndian.Uint64(k))); err != nil {
					return err
				}
			}
			if err := c.Delete(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (t *boltTx) Events(after uint64, limit int) ([]Event, error) {
	var out []Event
	c := t.tx.Bucket(bucketEvents).Cursor()
	for k, v := c.Seek(binary.BigEndian.AppendUint64(nil, after+1)); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Next() {
		var e Event
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, fmt.Errorf("state: event %d: %w", binary.BigEndian.Uint64(k), err)
		}
		out = append(out, e)
	}
	return out, nil
}

func (t *boltTx) Latest(n int, host string) ([]Event, error) {
	events := t.tx.Bucket(bucketEvents)
	decode := func(k, v []byte) (Event, error) {
		var e Event
		if err := json.Unmarshal(v, &e); err != nil {
			return e, fmt.Errorf("state: event %d: %w", binary.BigEndian.Uint64(k), err)
		}
		return e, nil
	}
	out := make([]Event, 0, min(n, 1024))
	if host == "" {
		c := events.Cursor()
		for k, v := c.Last(); k != nil && len(out) < n; k, v = c.Prev() {
			e, err := decode(k, v)
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
	} else {
		// The host's entries of the index, newest first: seek past its last one, step back.
		prefix := append([]byte(host), 0)
		c := t.tx.Bucket(bucketHostEvents).Cursor()
		k, _ := c.Seek(hostEventKey(host, math.MaxUint64))
		if k == nil {
			k, _ = c.Last()
		} else if !bytes.Equal(k, hostEventKey(host, math.MaxUint64)) {
			k, _ = c.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8 && len(out) < n; k, _ = c.Prev() {
			seq := k[len(prefix):]
			v := events.Get(seq)
			if v == nil {
				continue // dropped by retention in an older cairn's file
			}
			e, err := decode(seq, v)
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
	}
	slices.Reverse(out)
	return out, nil
}

func (t *boltTx) Lease(mac site.MAC) (Lease, bool, error) {
	v := t.tx.Bucket(bucketLeases).Get([]byte(mac.String()))
	if v == nil {
		return Lease{}, false, nil
	}
	var l Lease
	if err := json.Unmarshal(v, &l); err != nil {
		return Lease{}, false, fmt.Errorf("state: lease of %s: %w", mac, err)
	}
	return l, true, nil
}

func (t *boltTx) Leases() ([]Lease, error) {
	var out []Lease
	err := t.tx.Bucket(bucketLeases).ForEach(func(k, v []byte) error {
		var l Lease
		if err := json.Unmarshal(v, &l); err != nil {
			return fmt.Errorf("state: lease of %s: %w", k, err)
		}
		out = append(out, l)
		return nil
	})
	return out, err // bbolt iterates in key order, and canonical MACs sort as their bytes do
}

func (t *boltTx) PutLease(l Lease) error {
	if !t.writable {
		return ErrReadOnly
	}
	if err := l.check(); err != nil {
		return err
	}
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	t.rec.ch.Leases = true
	return t.tx.Bucket(bucketLeases).Put([]byte(l.MAC.String()), b)
}

func (t *boltTx) DeleteLease(mac site.MAC) error {
	if !t.writable {
		return ErrReadOnly
	}
	t.rec.ch.Leases = true
	return t.tx.Bucket(bucketLeases).Delete([]byte(mac.String()))
}
