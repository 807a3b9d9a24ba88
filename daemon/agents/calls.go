package agents

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/agent/initramfs"
	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/daemon/token"
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
	var cur *site.Site
	if s.Site != nil {
		cur = s.Site()
	}
	hostToken, hostHash := token.New()
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
		}
		if cur != nil {
			plan.Site = cur.Settings.Name
		}
		if a.OS != nil {
			plan.Image.Format = api.ImageFormat(a.OS.Format)
			plan.Image.UncompressedDigest = a.OS.UncompressedDigest.String()
			plan.Image.UncompressedSize = a.OS.UncompressedSize
		}
		for _, pt := range sp.Partitions {
			plan.Partitions = append(plan.Partitions, api.Partition{Label: pt.Label, SizeBytes: uint64(pt.Size), Filesystem: fsOf(pt), Mount: pt.Mount}) //nolint:gosec // sizes are positive
		}
		// Each plan is a new attempt, with a new host token: the one the configdrive carries.
		h.HostTokenHash = hostHash
		plan.ConfigDrive, err = configDrive(h, sp, cur, base, hostToken, s.hostAgentURL(base))
		if err != nil {
			return http.StatusConflict, api.Error{Error: fmt.Sprintf("no plan for %s: %v", h.Name, err)}, nil
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

// hostAgentURL is where a new host fetches cairn-agent for host mode: its blob in the
// appliance's registry, which the URL's digest names (so the host checks what it got). ""
// when the store carries no agent.
func (s *server) hostAgentURL(base string) string {
	_, p, err := s.Content.Find(airgap.KindFile, initramfs.AgentArtifact)
	if err != nil {
		return ""
	}
	return base + "/v2/" + "files/" + initramfs.AgentArtifact + "/blobs/" + p.Digest.String()
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
		want, err := s.imageDigest(h)
		if err != nil {
			return http.StatusConflict, api.Error{Error: err.Error()}, nil
		}
		disk := ""
		if d.Disk != "" {
			disk = " on " + text(d.Disk, 80)
		}
		var msg string
		switch {
		case d.Adopted:
			msg = fmt.Sprintf("provisioned: adopted, not written: the disk%s already carries this site's configdrive for %s (provision %d), image %s", disk, h.Name, h.Provision, text(d.WrittenDigest, 80))
			if d.WrittenDigest != want {
				msg += fmt.Sprintf(" (the site's image is now %s: raise provision to write it)", want)
			}
		case d.WrittenDigest != want:
			// Done is only for a written image whose digest checked out: anything else is a
			// failed attempt, whatever the agent thinks.
			reason := fmt.Sprintf("verifying: the agent reported %q written, but the image is %s", text(d.WrittenDigest, 80), want)
			spend(h)
			h.Phase, h.Reason, h.Message, h.Failures, h.Updated = state.Failed, reason, "failed", h.Failures+1, now()
			s.forget(c.mac)
			if err := tx.PutHost(*h); err != nil { // authorized writes back only what it answers 2xx to
				return 0, nil, err
			}
			return http.StatusConflict, api.Error{Error: reason}, tx.Append(state.Event{Host: h.Name, Kind: "host.failed", Message: "provisioning failed: " + reason})
		default:
			msg = fmt.Sprintf("provisioned: %s written%s and verified", want, disk)
		}
		if m := text(d.Message, 200); m != "" {
			msg += "; " + m
		}
		spend(h)
		h.Phase, h.Progress, h.Reason, h.Failures, h.Message = state.Provisioned, 100, "", 0, text(msg, 300)
		s.forget(c.mac)
		kind := "host.provisioned"
		if d.Adopted {
			kind = "host.adopted"
		}
		return http.StatusOK, nil, tx.Append(state.Event{Host: h.Name, Kind: kind, Message: msg + "; it boots from its disk from now on"})
	})
}

// imageDigest is the uncompressed digest of h's OS image: what a done must report.
func (s *server) imageDigest(h *state.Host) (string, error) {
	var sp spec
	if err := json.Unmarshal(h.Spec, &sp); err != nil || sp.OS == "" {
		return "", fmt.Errorf("host %s has no recorded spec (no OS): is the site applied?", h.Name)
	}
	a, p, err := s.Content.Find(airgap.KindOS, sp.OS)
	if err != nil {
		return "", fmt.Errorf("host %s: its OS image %s: %w", h.Name, sp.OS, err)
	}
	if a.OS != nil && a.OS.UncompressedDigest != "" {
		return a.OS.UncompressedDigest.String(), nil
	}
	return p.Digest.String(), nil
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
		h.Phase, h.Reason, h.Message, h.Failures = state.Failed, reason, "failed", h.Failures+1
		s.forget(c.mac)
		next := "its next boot tries again"
		if h.Failures >= state.MaxAttempts {
			next = fmt.Sprintf("%d attempts failed in a row: its boots wait, writing nothing, until cairn host reprovision %s", h.Failures, h.Name)
		}
		return http.StatusOK, nil, tx.Append(state.Event{Host: h.Name, Kind: "host.failed",
			Message: fmt.Sprintf("provisioning failed: %s; %s", reason, next)})
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
