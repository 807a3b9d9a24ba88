package state

import (
	"slices"
	"strings"
)

// HostsByMAC returns the hosts of tx whose MAC is mac, sorted by name: usually one, or none;
// a discovered record beside the site host that adopts it, for as long as a site edit is being
// applied. MACs are compared as written, so pass the canonical form (site.MAC's String), the
// one the daemon records. Both stores answer from the hosts they keep decoded, without
// copying them all.
func HostsByMAC(tx Tx, mac string) ([]Host, error) {
	if f, ok := tx.(interface{ hostsByMAC(string) ([]Host, error) }); ok {
		return f.hostsByMAC(mac)
	}
	hosts, err := tx.Hosts()
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(hosts, func(h Host) bool { return h.MAC != mac }), nil
}

func (t *memTx) hostsByMAC(mac string) ([]Host, error) {
	var out []Host
	for _, h := range t.d.hosts {
		if h.MAC == mac {
			out = append(out, h)
		}
	}
	slices.SortFunc(out, func(a, b Host) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (t *boltTx) hostsByMAC(mac string) ([]Host, error) {
	if t.cache == nil {
		// A read transaction's Hosts keeps what it decodes as the cache; a writer's reads the
		// bucket, its own writes included.
		hosts, err := t.Hosts()
		if err != nil || t.cache == nil {
			return slices.DeleteFunc(hosts, func(h Host) bool { return h.MAC != mac }), err
		}
	}
	var out []Host
	for _, h := range t.cache.hosts {
		if _, written := t.dirty[h.Name]; !written && h.MAC == mac {
			out = append(out, h)
		}
	}
	for _, h := range t.dirty {
		if h != nil && h.MAC == mac {
			out = append(out, *h)
		}
	}
	slices.SortFunc(out, func(a, b Host) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
