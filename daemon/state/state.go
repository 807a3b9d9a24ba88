// Package state is what the daemon remembers between restarts: every host with its lifecycle
// phase, hashed tokens, the site generations last applied and last attempted, an
// append-only event log with retention, indexed by host, and the DHCP leases of machines that
// got a pool address (package daemon/dhcp). Every change is one transaction, so
// a daemon killed at any point restarts into a consistent state. Subscribe tells a reader what
// each committed transaction changed, so that it need not poll; nothing in the daemon
// subscribes yet.
//
// Two stores implement it: Open (one bbolt file, schema-versioned with migrations, which keeps
// every host decoded as of the last commit so that reads copy instead of decoding) and
// NewMemory (for tests and dry runs). One conformance suite runs against both.
package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/cairn-appliance/cairn/site"
)

// Phase is where a host is in its life.
type Phase string

// The phases of a host.
const (
	Discovered   Phase = "discovered"   // PXE-booted but not in the site: it reported its inventory
	Pending      Phase = "pending"      // in the site, waiting to be provisioned
	Provisioning Phase = "provisioning" // the netboot agent is writing its disk
	Provisioned  Phase = "provisioned"  // the disk is written; it boots from it
	Deploying    Phase = "deploying"    // its containers are being converged
	Ready        Phase = "ready"        // running what the site says
	Failed       Phase = "failed"       // stopped with a Reason
)

// MaxAttempts is how many provisioning attempts may fail in a row before the host's boots stop
// trying: its boot script then waits, writing nothing, until the provision counter is raised.
const MaxAttempts = 3

// Phases lists every phase in life order.
var Phases = []Phase{Discovered, Pending, Provisioning, Provisioned, Deploying, Ready, Failed}

// Host is what the daemon knows of one machine.
type Host struct {
	Name      string `json:"name"`
	MAC       string `json:"mac"`
	IP        string `json:"ip,omitempty"`
	Phase     Phase  `json:"phase"`
	Reason    string `json:"reason,omitempty"`   // why it failed
	Progress  int    `json:"progress,omitempty"` // percent, while provisioning
	Provision int    `json:"provision"`          // the site's provisioning counter last acted on
	// Failures counts the provisioning attempts that failed in a row since the counter was
	// last raised (or the host added); a verified attempt resets it.
	Failures int `json:"failures,omitempty"`

	// Spec and Containers are the host's desired spec and containers as last applied, as
	// canonical JSON (see package daemon/plan): a plan diffs the site against them.
	Spec                 json.RawMessage `json:"spec,omitempty"`
	Containers           json.RawMessage `json:"containers,omitempty"`
	ContainersGeneration int64           `json:"containers_generation,omitempty"`
	// Digests maps each container's name to its image's digest in the store, as last applied.
	Digests json.RawMessage `json:"digests,omitempty"`
	// Agent is the host agent's last report (agent/api.HostStatus, as JSON): the generation it
	// runs and each container's state; AgentSeen when it changed last.
	Agent     json.RawMessage `json:"agent,omitempty"`
	AgentSeen time.Time       `json:"agent_seen,omitzero"`

	ProvisionTokenHash string `json:"provision_token_hash,omitempty"` // one-time, for the netboot agent
	HostTokenHash      string `json:"host_token_hash,omitempty"`      // for the host agent
	// ProvisionTokenSpent is the hash of the provisioning token the last attempt ended with
	// (done or failed), so that the agent API can tell a reused token from a wrong one.
	ProvisionTokenSpent string `json:"provision_token_spent,omitempty"`

	// Inventory is what the netboot agent last reported of the machine (agent/api.Inventory,
	// as JSON), and Message the last thing its agent said (a step, a failure).
	Inventory json.RawMessage `json:"inventory,omitempty"`
	Message   string          `json:"message,omitempty"`

	Updated time.Time `json:"updated"`
}

// Generation records site loads: the last one attempted and the last one applied in full.
type Generation struct {
	Attempted            int64     `json:"attempted"`
	AttemptedFingerprint string    `json:"attempted_fingerprint,omitempty"`
	AttemptedAt          time.Time `json:"attempted_at,omitzero"`
	Error                string    `json:"error,omitempty"` // why the last attempt was not applied

	Applied            int64     `json:"applied"`
	AppliedFingerprint string    `json:"applied_fingerprint,omitempty"`
	AppliedAt          time.Time `json:"applied_at,omitzero"`
}

// Event is one line of the event log.
type Event struct {
	Seq     uint64    `json:"seq"` // assigned by Append, increasing
	Time    time.Time `json:"time"`
	Host    string    `json:"host,omitempty"`
	Kind    string    `json:"kind"` // e.g. site.applied, host.phase, host.failed
	Message string    `json:"message"`
}

// Lease is an address the DHCP service leased to a machine from the site's dhcp_range, kept
// so that a restarted daemon hands every machine the address it had, and never hands out one
// that a machine may still use.
type Lease struct {
	MAC      site.MAC   `json:"mac"`
	IP       netip.Addr `json:"ip"`
	Expiry   time.Time  `json:"expiry"`
	Hostname string     `json:"hostname,omitempty"` // the name the machine asked for (DHCP option 12)
}

// check refuses a lease that could not be read back: a MAC that no network card has, or an
// address that is not IPv4.
func (l Lease) check() error {
	if l.MAC.IsZero() || l.MAC[0]&1 == 1 {
		return fmt.Errorf("state: lease of %s: not a network card's MAC", l.MAC)
	}
	if !l.IP.Is4() {
		return fmt.Errorf("state: lease of %s: %v is not an IPv4 address", l.MAC, l.IP)
	}
	return nil
}

// Tx is one transaction. Reads see the transaction's own writes. The hosts it returns may share
// their Spec, Containers, Digests, Agent and Inventory bytes with the store's cache: replace them, never change them in place.
type Tx interface {
	Host(name string) (Host, bool, error)
	Hosts() ([]Host, error) // sorted by name
	PutHost(h Host) error
	DeleteHost(name string) error
	Generation() (Generation, error)
	SetGeneration(g Generation) error
	// Append adds an event, setting its Seq (and its Time when zero). The oldest events beyond
	// the store's retention are dropped.
	Append(e Event) error
	// Events returns up to limit events with Seq > after, oldest first.
	Events(after uint64, limit int) ([]Event, error)
	// Latest returns the newest n events (of host only, when host is not ""), oldest first.
	Latest(n int, host string) ([]Event, error)
	Lease(mac site.MAC) (Lease, bool, error)
	Leases() ([]Lease, error) // sorted by MAC
	PutLease(l Lease) error
	DeleteLease(mac site.MAC) error
}

// Store keeps the state.
type Store interface {
	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in a read-write transaction: everything it wrote is kept if it returns
	// nil, nothing otherwise.
	Update(ctx context.Context, fn func(Tx) error) error
	// Subscribe delivers what each committed transaction changed, until cancel is called.
	// A subscriber that falls behind gets the changes merged, never lost.
	Subscribe() (changes <-chan Change, cancel func())
	Close() error
}

// Change says what a committed transaction touched.
type Change struct {
	Hosts      []string // hosts written or deleted, sorted
	Generation bool
	Events     bool
	Leases     bool
}

func (c Change) empty() bool { return len(c.Hosts) == 0 && !c.Generation && !c.Events && !c.Leases }

func (c Change) merge(o Change) Change {
	hosts := append(slices.Clone(c.Hosts), o.Hosts...)
	slices.Sort(hosts)
	return Change{Hosts: slices.Compact(hosts), Generation: c.Generation || o.Generation, Events: c.Events || o.Events, Leases: c.Leases || o.Leases}
}

// ErrReadOnly is returned by Update in a read-only transaction or store.
var ErrReadOnly = errors.New("state: read-only")

// DefaultRetention is how many events a store keeps.
const DefaultRetention = 10000

// hub fans committed changes out to subscribers, merging for slow ones.
type hub struct {
	mu   sync.Mutex
	subs map[chan Change]struct{}
}

func (h *hub) subscribe() (<-chan Change, func()) {
	c := make(chan Change, 1)
	h.mu.Lock()
	if h.subs == nil {
		h.subs = map[chan Change]struct{}{}
	}
	h.subs[c] = struct{}{}
	h.mu.Unlock()
	return c, func() {
		h.mu.Lock()
		delete(h.subs, c)
		h.mu.Unlock()
	}
}

func (h *hub) publish(ch Change) {
	if ch.empty() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.subs {
		select {
		case c <- ch:
		default:
			// Full: fold the pending change into this one.
			select {
			case old := <-c:
				c <- old.merge(ch)
			default:
				c <- ch
			}
		}
	}
}

// recorder notes what a transaction touches, for subscribers.
type recorder struct{ ch Change }

func (r *recorder) host(name string) { r.ch.Hosts = append(r.ch.Hosts, name) }

func (r *recorder) change() Change { return Change{}.merge(r.ch) }
