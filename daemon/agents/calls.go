package agents

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/site"
)

// DiscoveredName is the name of the record of a machine the site does not name.
func DiscoveredName(mac site.MAC) string {
	return "discovered-" + strings.ReplaceAll(mac.String(), ":", "")
}

func (s *server) inventory(w http.ResponseWriter, r *http.Request) {
	c, ok := begin(w, r, api.CallInventory)
	if !ok {
		return
	}
	var inv api.Inventory
	if !decode(w, r, &inv) {
		return
	}
	if inv.MAC != "" {
		m, err := site.ParseMAC(inv.MAC)
		if err != nil || m.String() != c.mac {
			fail(w, http.StatusBadRequest, fmt.Sprintf("the inventory's mac %q is not the path's %s", inv.MAC, c.mac))
			return
		}
	}
	inv.MAC = c.mac
	raw, err := json.Marshal(inv) // what the agent sent, without what the API does not know
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	if c.token != "" {
		s.authorized(w, r, c, func(tx state.Tx, h *state.Host) (int, any, error) {
			h.Inventory, h.Message = raw, "inventory reported"
			return http.StatusOK, api.Registered{Host: h.Name}, tx.Append(state.Event{Host: h.Name, Kind: "host.inventory", Message: "the netboot agent reported the inventory: " + summary(inv)})
		})
		return
	}
	s.discover(w, r, c, raw, inv)
}

// discover creates or updates the discovered record of a machine that called without a token.
func (s *server) discover(w http.ResponseWriter, r *http.Request, c call, raw json.RawMessage, inv api.Inventory) {
	m, _ := site.ParseMAC(c.mac)
	name := DiscoveredName(m)
	code, body := http.StatusOK, any(api.Registered{Host: name, Discovered: true})
	err := s.Store.Update(r.Context(), func(tx state.Tx) error {
		hosts, err := state.HostsByMAC(tx, c.mac)
		if err != nil {
			return err
		}
		var rec *state.Host
		for i, h := range hosts {
			if h.Phase != state.Discovered {
				// The site names it: only its provisioning agent, with its token, may report.
				code, body = http.StatusUnauthorized, api.Error{Error: missing + " token"}
				return s.refuse(tx, c, h, missing)
			}
			if h.Name == name {
				rec = &hosts[i]
			}
		}
		if rec != nil {
			if bytes.Equal(rec.Inventory, raw) && rec.Message == "inventory reported" {
				return nil // the same report again: nothing to write
			}
			rec.Inventory, rec.Message, rec.Updated = raw, "inventory reported", now()
			if err := tx.PutHost(*rec); err != nil {
				return err
			}
			return tx.Append(state.Event{Host: name, Kind: "host.inventory", Message: "the discovery agent reported a new inventory: " + summary(inv)})
		}
		if other, ok, err := tx.Host(name); err != nil {
			return err
		} else if ok {
			code, body = http.StatusConflict, api.Error{Error: fmt.Sprintf("the name %s is taken by host %s (MAC %s)", name, other.Name, other.MAC)}
			return nil
		}
		all, err := tx.Hosts()
		if err != nil {
			return err
		}
		n := 0
		for _, h := range all {
			if h.Phase == state.Discovered {
				n++
			}
		}
		if n >= s.MaxDiscovered {
			code, body = http.StatusServiceUnavailable, api.Error{Error: fmt.Sprintf("the appliance keeps at most %d discovered machines; add them to the site first", s.MaxDiscovered)}
			s.Log.Warn("discovered machine not recorded: too many", "mac", c.mac, "max", s.MaxDiscovered)
			return nil
		}
		h := state.Host{Name: name, MAC: c.mac, Phase: state.Discovered, Inventory: raw, Message: "inventory reported", Updated: now()}
		if err := tx.PutHost(h); err != nil {
			return err
		}
		return tx.Append(state.Event{Host: name, Kind: "host.discovered",
			Message: fmt.Sprintf("%s PXE-booted and is not in the site (%s): add a host file with its MAC to provision it; cairn host show %s prints one", c.mac, summary(inv), name)})
	})
	if err != nil {
		s.Log.Error("discovery", "mac", c.mac, "err", err)
		fail(w, http.StatusInternalServerError, "recording the inventory: "+err.Error())
		return
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="cairn agent"`)
	}
	reply(w, code, body)
}

// summary sums an inventory up in a few words for an event.
func summary(inv api.Inventory) string {
	var parts []string
	if p := strings.TrimSpace(inv.System.Vendor + " " + inv.System.Product); p != "" {
		parts = append(parts, p)
	}
	parts = append(parts, fmt.Sprintf("%d CPU threads, %s memory, %d disk(s)", inv.CPU.Threads, bytesIEC(inv.MemoryBytes), len(inv.Disks)))
	if inv.Firmware != "" {
		parts = append(parts, string(inv.Firmware))
	}
	return text(strings.Join(parts, ", "), 200)
}

// spec is the part of a host's recorded spec a plan reads (see package daemon/plan).
type spec struct {
	MAC               string           `json:"mac"`
	IP                string           `json:"ip"`
	OS                string           `json:"os"`
	Disk              string           `json:"disk"`
	Partitions        []site.Partition `json:"partitions"`
	SSHAuthorizedKeys []string         `json:"ssh_authorized_keys"`
	Timezone          string           `json:"timezone"`
}

func (s *server) plan(w http.ResponseWriter, r *http.Request) {
	c, ok := begin(w, r, api.CallPlan)
	if !ok {
		return
	}
	base := s.serverURL(r)
	s.authorized(w, r, c, func(tx state.Tx, h *state.Host) (int, any, error) {
		var sp spec
		if err := json.Unmarshal(h.Spec, &sp); err != nil || sp.OS == "" {
			return http.StatusConflict, api.Error{Error: "host " + h.Name + " has no recorded spec (no OS): is the site applied?"}, nil
		}
		a, p, err := s.Content.Find(airgap.KindOS, sp.OS)
		if err != nil {
			msg := fmt.Sprintf("no plan for %s: its OS image %s: %v", h.Name, sp.OS, err)
			if !errors.Is(err, airgap.ErrNoArtifact) {
				s.Log.Error("plan", "host", h.Name, "err", err)
			}
			return http.StatusConflict, api.Error{Error: msg}, tx.Append(state.Event{Host: h.Name, Kind: "host.plan_refused", Message: msg})
		}
		plan := api.ProvisionPlan{Host: h.Name, Provision: h.Provision, Disk: sp.Disk,
			Image: api.Image{Artifact: a.Name, Repository: a.Repository, ManifestDigest: a.Digest.String(),
				URL:    base + "/v2/" + a.Repository + "/blobs/" + p.Digest.String(),
				Digest: p.Digest.String(), Size: p.Size},
			ConfigDrive: configDrive(h, sp),
		}
		if a.OS != nil {
			plan.Image.Format = api.ImageFormat(a.OS.Format)
			plan.Image.UncompressedDigest = a.OS.UncompressedDigest.String()
			plan.Image.UncompressedSize = a.OS.UncompressedSize
		}
		for _, pt := range sp.Partitions {
			fs := pt.Filesystem
			if fs == "" {
				fs = "ext4"
			}
			plan.Partitions = append(plan.Partitions, api.Partition{Label: pt.Label, SizeBytes: uint64(pt.Size), Filesystem: fs, Mount: pt.Mount})
		}
		if h.Phase != state.Provisioning {
			if err := tx.Append(state.Event{Host: h.Name, Kind: "host.provisioning",
				Message: fmt.Sprintf("the netboot agent fetched its plan: %s onto %s", a.Name, sp.Disk)}); err != nil {
				return 0, nil, err
			}
		}
		h.Phase, h.Progress, h.Reason, h.Message = state.Provisioning, 0, "", "plan fetched"
		return http.StatusOK, plan, nil
	})
}

// configDrive is the NoCloud seed of a host: for now its name, its SSH keys and its time
// zone. cloud-init reads YAML, of which JSON is a part: encoding/json writes it, and escapes
// whatever the site holds.
func configDrive(h *state.Host, sp spec) api.ConfigDrive {
	meta, _ := json.Marshal(map[string]string{
		"instance-id":    fmt.Sprintf("%s-%d", h.Name, h.Provision),
		"local-hostname": h.Name,
	})
	user := map[string]any{"hostname": h.Name, "preserve_hostname": false}
	if len(sp.SSHAuthorizedKeys) > 0 {
		user["ssh_authorized_keys"] = sp.SSHAuthorizedKeys
	}
	if sp.Timezone != "" {
		user["timezone"] = sp.Timezone
	}
	ud, _ := json.Marshal(user)
	return api.ConfigDrive{MetaData: string(meta) + "\n", UserData: "#cloud-config\n" + string(ud) + "\n"}
}

func (s *server) reportProgress(w http.ResponseWriter, r *http.Request) {
	c, ok := begin(w, r, api.CallProgress)
	if !ok {
		return
	}
	var p api.Progress
	if !decode(w, r, &p) {
		return
	}
	if !stepName.MatchString(p.Step) {
		fail(w, http.StatusBadRequest, fmt.Sprintf("step %q: expected a short lowercase word such as writing", p.Step))
		return
	}
	p.Percent = min(max(p.Percent, 0), 100)
	if s.coalesce(r, c, p) {
		reply(w, http.StatusAccepted, nil)
		return
	}
	s.authorized(w, r, c, func(tx state.Tx, h *state.Host) (int, any, error) {
		msg := p.Step
		if m := text(p.Message, 200); m != "" {
			msg += ": " + m
		}
		s.mu.Lock()
		last := s.progress[c.mac]
		if len(s.progress) > 100000 {
			clear(s.progress)
		}
		s.progress[c.mac] = recorded{step: p.Step, at: now()}
		s.mu.Unlock()
		if h.Phase != state.Provisioning || last.step != p.Step {
			if err := tx.Append(state.Event{Host: h.Name, Kind: "host.progress", Message: fmt.Sprintf("%d%% %s", p.Percent, msg)}); err != nil {
				return 0, nil, err
			}
		}
		h.Phase, h.Progress, h.Message = state.Provisioning, p.Percent, msg
		return http.StatusAccepted, nil, nil
	})
}

// coalesce answers a progress report that need not be recorded (same step as the last one,
// recorded less than ProgressEvery ago, not the end) once its token checks out. It returns
// false when the report is to be recorded, or refused.
func (s *server) coalesce(r *http.Request, c call, p api.Progress) bool {
	s.mu.Lock()
	last, ok := s.progress[c.mac]
	s.mu.Unlock()
	if !ok || last.step != p.Step || p.Percent == 100 || now().Sub(last.at) >= s.ProgressEvery {
		return false
	}
	var why string
	err := s.Store.View(r.Context(), func(tx state.Tx) (err error) {
		h, reason, err := authorize(tx, c)
		if err == nil && reason == "" && h.Phase != state.Provisioning {
			reason = "phase" // recorded elsewhere since: let the full path decide
		}
		why = reason
		return err
	})
	return err == nil && why == ""
}

func (s *server) done(w http.ResponseWriter, r *http.Request) {
	c, ok := begin(w, r, api.CallDone)
	if !ok {
		return
	}
	var d api.Done
	if !decode(w, r, &d) {
		return
	}
	s.authorized(w, r, c, func(tx state.Tx, h *state.Host) (int, any, error) {
		msg := "provisioned: the image is written"
		if d.WrittenDigest != "" {
			msg += " (" + text(d.WrittenDigest, 80) + ")"
		}
		if m := text(d.Message, 200); m != "" {
			msg += "; " + m
		}
		spend(h)
		h.Phase, h.Progress, h.Reason, h.Message = state.Provisioned, 100, "", text(msg, 200)
		s.forget(c.mac)
		return http.StatusOK, nil, tx.Append(state.Event{Host: h.Name, Kind: "host.provisioned", Message: msg + "; it boots from its disk from now on"})
	})
}

func (s *server) failed(w http.ResponseWriter, r *http.Request) {
	c, ok := begin(w, r, api.CallFailed)
	if !ok {
		return
	}
	var f api.Failed
	if !decode(w, r, &f) {
		return
	}
	reason := text(f.Reason, 300)
	if reason == "" {
		fail(w, http.StatusBadRequest, "a failure needs a reason")
		return
	}
	if f.Step != "" && stepName.MatchString(f.Step) {
		reason = f.Step + ": " + reason
	}
	s.authorized(w, r, c, func(tx state.Tx, h *state.Host) (int, any, error) {
		spend(h)
		h.Phase, h.Reason, h.Message = state.Failed, reason, "failed"
		s.forget(c.mac)
		return http.StatusOK, nil, tx.Append(state.Event{Host: h.Name, Kind: "host.failed",
			Message: fmt.Sprintf("provisioning failed: %s; it boots from its disk until provisioned again (cairn host reprovision %s)", reason, h.Name)})
	})
}

// spend ends the attempt's token: it no longer opens anything, and is known as spent.
func spend(h *state.Host) {
	h.ProvisionTokenSpent, h.ProvisionTokenHash = h.ProvisionTokenHash, ""
}

func (s *server) forget(mac string) {
	s.mu.Lock()
	delete(s.progress, mac)
	s.mu.Unlock()
}

// bytesIEC writes n bytes for people: 16 GiB.
func bytesIEC(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d %ciB", int64(v), "KMGTPE"[exp])
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[exp])
}
