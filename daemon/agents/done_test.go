package agents

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/daemon/token"
	"github.com/cairn-appliance/cairn/site"
)

// plan fetches the plan with a new token, as an agent does first.
func (e *env) plan(t *testing.T) (string, api.ProvisionPlan) {
	t.Helper()
	tok := e.newToken(t)
	code, b := e.do(t, http.MethodGet, macWeb, api.CallPlan, tok, nil)
	if code != http.StatusOK {
		t.Fatalf("plan = %d %s", code, b)
	}
	var p api.ProvisionPlan
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	return tok, p
}

// TestDoneChecksTheDigest: a done whose digest is not the image's is a failed attempt, and the
// host is not provisioned; the control, the right digest, is.
func TestDoneChecksTheDigest(t *testing.T) {
	e := newEnv(t)
	tok, p := e.plan(t)
	wrongDigest := "sha256:" + strings.Repeat("0", 64)
	code, b := e.do(t, http.MethodPost, macWeb, api.CallDone, tok, api.Done{WrittenDigest: wrongDigest, Disk: "/dev/vda"})
	if code != http.StatusConflict || !strings.Contains(string(b), p.Image.UncompressedDigest) {
		t.Fatalf("done with the wrong digest = %d %s, want 409 naming %s", code, b, p.Image.UncompressedDigest)
	}
	h, evs := e.record(t, e.host)
	if h.Phase != state.Failed || h.Failures != 1 || h.ProvisionTokenHash != "" || last(evs).Kind != "host.failed" {
		t.Fatalf("after a wrong done: %s, %d failures, token %q, last event %+v", h.Phase, h.Failures, h.ProvisionTokenHash, last(evs))
	}
	// The token died with it.
	if code, _ := e.do(t, http.MethodPost, macWeb, api.CallDone, tok, api.Done{WrittenDigest: p.Image.UncompressedDigest}); code != http.StatusUnauthorized {
		t.Errorf("done with the spent token = %d, want 401", code)
	}

	tok, p = e.plan(t)
	if code, b := e.do(t, http.MethodPost, macWeb, api.CallDone, tok, api.Done{WrittenDigest: p.Image.UncompressedDigest, Disk: "/dev/vda"}); code != http.StatusOK {
		t.Fatalf("done with the image's digest = %d %s", code, b)
	}
	h, evs = e.record(t, e.host)
	if h.Phase != state.Provisioned || h.Failures != 0 || last(evs).Kind != "host.provisioned" || !strings.Contains(h.Message, "/dev/vda") {
		t.Errorf("after the right done: %s, %d failures, %q, last event %+v", h.Phase, h.Failures, h.Message, last(evs))
	}
}

// TestAdopted: a done that adopts the disk makes the host provisioned with an adoption event.
func TestAdopted(t *testing.T) {
	e := newEnv(t)
	tok, p := e.plan(t)
	if code, b := e.do(t, http.MethodPost, macWeb, api.CallDone, tok, api.Done{WrittenDigest: p.Image.UncompressedDigest, Adopted: true}); code != http.StatusOK {
		t.Fatalf("adopting done = %d %s", code, b)
	}
	h, evs := e.record(t, e.host)
	if h.Phase != state.Provisioned || last(evs).Kind != "host.adopted" || !strings.Contains(last(evs).Message, "not written") {
		t.Errorf("after adoption: %s, last event %+v", h.Phase, last(evs))
	}
}

// TestFailuresCount: failed attempts count up, each plan mints a new host token, and the
// counter says when the boots give up.
func TestFailuresCount(t *testing.T) {
	e := newEnv(t)
	var hashes []string
	for i := 1; i <= state.MaxAttempts; i++ {
		tok, p := e.plan(t)
		var agent api.HostAgent
		if err := json.Unmarshal([]byte(p.ConfigDrive.Agent), &agent); err != nil || agent.Host != "web-01" || agent.Token == "" {
			t.Fatalf("the configdrive's agent file %q: %v", p.ConfigDrive.Agent, err)
		}
		h, _ := e.record(t, e.host)
		if !token.Matches(h.HostTokenHash, agent.Token) {
			t.Fatalf("the host token in the plan is not the one the state keeps")
		}
		hashes = append(hashes, h.HostTokenHash)
		if code, b := e.do(t, http.MethodPost, macWeb, api.CallFailed, tok, api.Failed{Step: "writing", Reason: "the disk went away"}); code != http.StatusOK {
			t.Fatalf("failed = %d %s", code, b)
		}
		h, evs := e.record(t, e.host)
		if h.Failures != i || h.Phase != state.Failed {
			t.Fatalf("after %d failures: %d, %s", i, h.Failures, h.Phase)
		}
		gaveUp := strings.Contains(last(evs).Message, "attempts failed in a row")
		if gaveUp != (i == state.MaxAttempts) {
			t.Errorf("after %d failures the event says %q", i, last(evs).Message)
		}
	}
	if hashes[0] == hashes[1] {
		t.Errorf("two plans gave the same host token")
	}
}

// TestConfigDriveNetwork: with a site, the configdrive holds the host's address, gateway, DNS
// and NTP, and the site's name is in the plan.
func TestConfigDriveNetwork(t *testing.T) {
	cur := &site.Site{Settings: site.Settings{Name: "rack1", Domain: "rack1.example"}, Network: site.Network{
		CIDR: netip.MustParsePrefix("10.20.0.0/24"), Gateway: netip.MustParseAddr("10.20.0.254"),
		DNS: []netip.Addr{netip.MustParseAddr("10.20.0.1")}, NTP: []string{"10.20.0.1", "ntp.rack1.example"}}}
	h := &state.Host{Name: "web-01", MAC: macWeb, Provision: 2}
	sp := spec{MAC: macWeb, IP: "10.20.0.11", Partitions: []site.Partition{{Label: "swap", Filesystem: "swap"}, {Label: "data", Mount: "/srv"}}}
	cd, err := configDrive(h, sp, cur, "http://10.20.0.1:5000", "TOKEN", "")
	if err != nil {
		t.Fatal(err)
	}
	var net struct {
		Version   int `json:"version"`
		Ethernets map[string]struct {
			Match       map[string]string   `json:"match"`
			Addresses   []string            `json:"addresses"`
			Routes      []map[string]string `json:"routes"`
			Nameservers struct {
				Addresses []string `json:"addresses"`
				Search    []string `json:"search"`
			} `json:"nameservers"`
		} `json:"ethernets"`
	}
	if err := json.Unmarshal([]byte(cd.NetworkConfig), &net); err != nil {
		t.Fatalf("network-config %q: %v", cd.NetworkConfig, err)
	}
	eth := net.Ethernets["boot"]
	if net.Version != 2 || eth.Match["macaddress"] != macWeb || len(eth.Addresses) != 1 || eth.Addresses[0] != "10.20.0.11/24" ||
		len(eth.Routes) != 1 || eth.Routes[0]["via"] != "10.20.0.254" || eth.Nameservers.Addresses[0] != "10.20.0.1" || eth.Nameservers.Search[0] != "rack1.example" {
		t.Errorf("network-config = %s", cd.NetworkConfig)
	}
	ud, ok := strings.CutPrefix(cd.UserData, "#cloud-config\n")
	var user map[string]any
	if !ok || json.Unmarshal([]byte(ud), &user) != nil {
		t.Fatalf("user-data = %q", cd.UserData)
	}
	if user["fqdn"] != "web-01.rack1.example" || !strings.Contains(cd.UserData, `NTP=10.20.0.1 ntp.rack1.example`) ||
		!strings.Contains(cd.UserData, `["LABEL=data","/srv","ext4","defaults,nofail","0","2"]`) ||
		!strings.Contains(cd.UserData, `["/dev/disk/by-partlabel/swap","none","swap","sw","0","0"]`) {
		t.Errorf("user-data = %s", cd.UserData)
	}
	if !strings.Contains(cd.MetaData, `"instance-id":"web-01-p2-`) {
		t.Errorf("meta-data = %s", cd.MetaData)
	}
	// A host without an address in the site asks DHCP.
	sp.IP = ""
	if cd, _ = configDrive(h, sp, cur, "http://10.20.0.1:5000", "TOKEN", ""); !strings.Contains(cd.NetworkConfig, `"dhcp4":true`) {
		t.Errorf("without an address: %s", cd.NetworkConfig)
	}
}

// TestConfigDriveInstallsTheHostAgent: with cairn-agent in the store, the first boot fetches
// it from its registry blob, checks it against the digest the URL names, and installs it.
func TestConfigDriveInstallsTheHostAgent(t *testing.T) {
	h := &state.Host{Name: "web-01", MAC: macWeb, Provision: 1}
	url := "http://10.20.0.1:5000/v2/files/cairn-agent/blobs/sha256:" + strings.Repeat("ab", 32)
	cd, err := configDrive(h, spec{MAC: macWeb}, nil, "http://10.20.0.1:5000", "TOKEN", url)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"runcmd":[["sh","-c","set -eu`, "curl -fsS", "'" + url + "'",
		"echo '" + strings.Repeat("ab", 32) + "  '", "sha256sum --check", "/usr/local/bin/cairn-agent host install"} {
		if !strings.Contains(cd.UserData, want) {
			t.Errorf("user-data lacks %q:\n%s", want, cd.UserData)
		}
	}
	// Control: without the agent in the store there is nothing to run.
	if cd, _ = configDrive(h, spec{MAC: macWeb}, nil, "http://10.20.0.1:5000", "TOKEN", ""); strings.Contains(cd.UserData, "runcmd") {
		t.Errorf("user-data runs a command without an agent to install: %s", cd.UserData)
	}
}
