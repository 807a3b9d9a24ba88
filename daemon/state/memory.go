package state

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/cairn-appliance/cairn/site"
)

// Memory is a Store in memory: for tests, and for plans against an empty state.
type Memory struct {
	mu        sync.RWMutex
	data      memData
	retention int
	hub       hub
}

type memData struct {
	hosts  map[string]Host
	gen    Generation
	events []Event
	seq    uint64
	leases map[site.MAC]Lease
}

func (d memData) clone() memData {
	return memData{hosts: maps.Clone(d.hosts), gen: d.gen, events: slices.Clone(d.events), seq: d.seq, leases: maps.Clone(d.leases)}
}

// NewMemory returns an empty in-memory store keeping retention events (0: DefaultRetention).
func NewMemory(retention int) *Memory {
	if retention <= 0 {
		retention = DefaultRetention
	}
	return &Memory{data: memData{hosts: map[string]Host{}, leases: map[site.MAC]Lease{}}, retention: retention}
}

// View implements Store.
func (m *Memory) View(ctx context.Context, fn func(Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return fn(&memTx{d: &m.data, retention: m.retention})
}

// Update implements Store.
func (m *Memory) Update(ctx context.Context, fn func(Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	work := m.data.clone()
	t := &memTx{d: &work, retention: m.retention, writable: true}
	if err := fn(t); err != nil {
		m.mu.Unlock()
		return err
	}
	m.data = work
	m.mu.Unlock()
	m.hub.publish(t.rec.change())
	return nil
}

// Subscribe implements Store.
func (m *Memory) Subscribe() (<-chan Change, func()) { return m.hub.subscribe() }

// Close implements Store.
func (m *Memory) Close() error { return nil }

type memTx struct {
	d         *memData
	retention int
	writable  bool
	rec       recorder
}

func (t *memTx) Host(name string) (Host, bool, error) {
	h, ok := t.d.hosts[name]
	return h, ok, nil
}

func (t *memTx) Hosts() ([]Host, error) {
	hosts := slices.Collect(maps.Values(t.d.hosts))
	slices.SortFunc(hosts, func(a, b Host) int { return cmp.Compare(a.Name, b.Name) })
	return hosts, nil
}

func (t *memTx) PutHost(h Host) error {
	if !t.writable {
		return ErrReadOnly
	}
	if h.Name == "" {
		return errors.New("state: a host needs a name")
	}
	t.d.hosts[h.Name] = h
	t.rec.host(h.Name)
	return nil
}

func (t *memTx) DeleteHost(name string) error {
	if !t.writable {
		return ErrReadOnly
	}
	delete(t.d.hosts, name)
	t.rec.host(name)
	return nil
}

func (t *memTx) Generation() (Generation, error) { return t.d.gen, nil }

func (t *memTx) SetGeneration(g Generation) error {
	if !t.writable {
		return ErrReadOnly
	}
	t.d.gen = g
	t.rec.ch.Generation = true
	return nil
}

func (t *memTx) Append(e Event) error {
	if !t.writable {
		return ErrReadOnly
	}
	t.d.seq++
	e.Seq = t.d.seq
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	t.d.events = append(t.d.events, e)
	if over := len(t.d.events) - t.retention; over > 0 {
		t.d.events = slices.Delete(t.d.events, 0, over)
	}
	t.rec.ch.Events = true
	return nil
}

func (t *memTx) Events(after uint64, limit int) ([]Event, error) {
	i, _ := slices.BinarySearchFunc(t.d.events, after+1, func(e Event, seq uint64) int { return cmp.Compare(e.Seq, seq) })
	out := t.d.events[i:]
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return slices.Clone(out), nil
}

func (t *memTx) Latest(n int, host string) ([]Event, error) {
	var out []Event
	for i := len(t.d.events) - 1; i >= 0 && len(out) < n; i-- {
		if e := t.d.events[i]; host == "" || e.Host == host {
			out = append(out, e)
		}
	}
	slices.Reverse(out)
	return out, nil
}

func (t *memTx) Lease(mac site.MAC) (Lease, bool, error) {
	l, ok := t.d.leases[mac]
	return l, ok, nil
}

func (t *memTx) Leases() ([]Lease, error) {
	leases := slices.Collect(maps.Values(t.d.leases))
	slices.SortFunc(leases, func(a, b Lease) int { return bytes.Compare(a.MAC[:], b.MAC[:]) })
	return leases, nil
}

func (t *memTx) PutLease(l Lease) error {
	if !t.writable {
		return ErrReadOnly
	}
	if err := l.check(); err != nil {
		return err
	}
	t.d.leases[l.MAC] = l
	t.rec.ch.Leases = true
	return nil
}

func (t *memTx) DeleteLease(mac site.MAC) error {
	if !t.writable {
		return ErrReadOnly
	}
	delete(t.d.leases, mac)
	t.rec.ch.Leases = true
	return nil
}
