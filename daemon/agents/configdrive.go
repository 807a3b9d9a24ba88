package agents

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/site"
)

// configDrive is the NoCloud seed of one provisioning attempt of h (package agent/configdrive
// writes it to the disk):
//
//   - meta-data: an instance-id new with each attempt (so cloud-init runs its first boot on the
//     new disk), and the host name;
//   - network-config (version 2): the site's address of the host (or DHCP when the site gives
//     none), the gateway and DNS, on the network card with the MAC it booted from;
//   - user-data: host name and domain, the site's SSH keys, time zone, the NTP servers for
//     systemd-timesyncd, and the file systems and mounts of the site's extra partitions;
//   - the host agent's file: the appliance's URL, the host's name and its new host token;
//   - when the store carries cairn-agent (agentURL, its blob in the registry), a first-boot
//     command that fetches it, checks its sha256 (the blob's digest), and installs and starts
//     it in host mode (cairn-agent host install), which reads the host agent's file from the
//     configdrive.
//
// cloud-init reads YAML, of which JSON is a part: encoding/json writes every file, and so
// escapes whatever the site holds.
func configDrive(h *state.Host, sp spec, cur *site.Site, server, hostToken, agentURL string) (api.ConfigDrive, error) {
	nonce := make([]byte, 4)
	_, _ = rand.Read(nonce)
	meta := map[string]string{
		"instance-id":    fmt.Sprintf("%s-p%d-%s", h.Name, h.Provision, hex.EncodeToString(nonce)),
		"local-hostname": h.Name,
	}
	user := map[string]any{"hostname": h.Name, "preserve_hostname": false, "manage_etc_hosts": true}
	if len(sp.SSHAuthorizedKeys) > 0 {
		user["ssh_authorized_keys"] = sp.SSHAuthorizedKeys
	}
	if sp.Timezone != "" {
		user["timezone"] = sp.Timezone
	}
	var files []map[string]any
	var netcfg map[string]any
	if cur != nil {
		if d := cur.Settings.Domain; d != "" {
			user["fqdn"] = h.Name + "." + d
		}
		if len(cur.Network.NTP) > 0 {
			// systemd-timesyncd takes them; cloud-init's ntp module would try to install a client.
			files = append(files, map[string]any{"path": "/etc/systemd/timesyncd.conf.d/cairn.conf", "permissions": "0644",
				"content": "# Written by cairn at provisioning: the site's NTP servers.\n[Time]\nNTP=" + strings.Join(cur.Network.NTP, " ") + "\n"})
		}
		var err error
		if netcfg, err = network(h, sp, cur); err != nil {
			return api.ConfigDrive{}, err
		}
	}
	if fs, mounts := filesystems(sp.Partitions); len(fs) > 0 {
		user["fs_setup"] = fs
		if len(mounts) > 0 {
			user["mounts"] = mounts
		}
	}
	if len(files) > 0 {
		user["write_files"] = files
	}
	if agentURL != "" {
		user["runcmd"] = []any{[]string{"sh", "-c", installAgent(agentURL)}}
	}
	agent, err := json.Marshal(api.HostAgent{Server: server, Host: h.Name, Token: hostToken})
	if err != nil {
		return api.ConfigDrive{}, err
	}
	cd := api.ConfigDrive{MetaData: jsonLine(meta), UserData: "#cloud-config\n" + jsonLine(user), Agent: string(agent) + "\n"}
	if netcfg != nil {
		cd.NetworkConfig = jsonLine(netcfg)
	}
	return cd, nil
}

// installAgent is the first-boot script that installs the host agent from url, a registry blob
// URL ending in its sha256 digest.
func installAgent(url string) string {
	hexDigest := url[strings.LastIndex(url, ":")+1:]
	return strings.Join([]string{
		"set -eu",
		"new=/usr/local/bin/.cairn-agent.new",
		"curl -fsS --retry 20 --retry-all-errors --retry-delay 3 -o \"$new\" '" + url + "'",
		"echo '" + hexDigest + "  '\"$new\" | sha256sum --check --quiet --strict",
		"chmod 0755 \"$new\"",
		"mv \"$new\" /usr/local/bin/cairn-agent",
		"/usr/local/bin/cairn-agent host install",
	}, "\n")
}

// network is the host's network-config (version 2): the card with the MAC it booted from gets
// the site's address for it, or DHCP when the site gives none.
func network(h *state.Host, sp spec, cur *site.Site) (map[string]any, error) {
	mac := strings.ToLower(sp.MAC)
	if mac == "" {
		mac = h.MAC
	}
	eth := map[string]any{"match": map[string]any{"macaddress": mac}}
	if sp.IP == "" {
		eth["dhcp4"] = true
	} else {
		ip, err := netip.ParseAddr(sp.IP)
		if err != nil {
			return nil, fmt.Errorf("its address %q: %w", sp.IP, err)
		}
		eth["addresses"] = []string{netip.PrefixFrom(ip, cur.Network.CIDR.Bits()).String()}
		if gw := cur.Network.Gateway; gw.IsValid() {
			eth["routes"] = []map[string]string{{"to": "default", "via": gw.String()}}
		}
	}
	if dns := cur.Network.DNS; len(dns) > 0 {
		ns := map[string]any{"addresses": dns}
		if d := cur.Settings.Domain; d != "" {
			ns["search"] = []string{d}
		}
		eth["nameservers"] = ns
	}
	return map[string]any{"version": 2, "ethernets": map[string]any{"boot": eth}}, nil
}

// filesystems is cloud-init's fs_setup and mounts for the extra partitions the agent made
// (their GPT names are the site's labels): a file system labelled like the partition, made at
// first boot only where there is none, mounted by label.
func filesystems(parts []site.Partition) (fsSetup []map[string]any, mounts [][]string) {
	for _, pt := range parts {
		fs := fsOf(pt)
		if fs == "none" {
			continue
		}
		dev := "/dev/disk/by-partlabel/" + pt.Label
		fsSetup = append(fsSetup, map[string]any{"label": pt.Label, "filesystem": fs, "device": dev, "partition": "none", "overwrite": false})
		switch {
		case fs == "swap":
			mounts = append(mounts, []string{dev, "none", "swap", "sw", "0", "0"})
		case pt.Mount != "":
			mounts = append(mounts, []string{"LABEL=" + pt.Label, pt.Mount, fs, "defaults,nofail", "0", "2"})
		}
	}
	slices.SortStableFunc(mounts, func(a, b []string) int { return strings.Compare(a[1], b[1]) })
	return fsSetup, mounts
}

// fsOf is a partition's file system, ext4 when the site names none.
func fsOf(pt site.Partition) string {
	if pt.Filesystem == "" {
		return "ext4"
	}
	return pt.Filesystem
}

// jsonLine is v as one line of JSON and a newline.
func jsonLine(v any) string {
	b, _ := json.Marshal(v)
	return string(b) + "\n"
}
