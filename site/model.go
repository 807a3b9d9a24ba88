package site

import (
	"net/netip"

	"github.com/cairn-appliance/cairn/site/tomlpos"
)

// Site is a whole, valid site directory: what cairn converges the hosts to.
//
// Struct tags drive both the loader and the JSON Schema (cairn site schema): toml is the key,
// doc its description, required, enum (values split by |), min and pattern constrain it.
type Site struct {
	Dir      string   `json:"-"` // the directory it was loaded from
	Settings Settings `json:"site"`
	Network  Network  `json:"network"`
	Defaults Defaults `json:"defaults"`
	// Hosts sorted by name, with the defaults already applied.
	Hosts []*Host `json:"hosts"`
	// Roles by name (the file stem under roles/).
	Roles map[string]*Role `json:"roles"`
}

// siteFile is the shape of site.toml.
type siteFile struct {
	Site     Settings `toml:"site" required:"true" doc:"The site's identity."`
	Network  Network  `toml:"network" required:"true" doc:"The provisioning network the appliance serves."`
	Defaults Defaults `toml:"defaults" doc:"Values every host gets unless its own file sets them."`
}

// Settings is the [site] table.
type Settings struct {
	Name string `toml:"name" json:"name" required:"true" pattern:"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" doc:"Short name of the site: lowercase letters, digits and '-'."`
	// Domain is the DNS domain hosts live in: a host's FQDN is NAME.DOMAIN.
	Domain string `toml:"domain" json:"domain,omitempty" doc:"DNS domain of the hosts; a host's FQDN is NAME.DOMAIN."`
	// AllowMassRemoval lets one change remove more than half of the known hosts, or every
	// container; without it such a plan is refused.
	AllowMassRemoval bool `toml:"allow_mass_removal" json:"allow_mass_removal,omitempty" doc:"Allow a single change to remove more than half of the hosts or every container."`
}

// Network is the [network] table: the segment the appliance provisions.
type Network struct {
	Interface   string       `toml:"interface" json:"interface" required:"true" doc:"Appliance network interface that faces the hosts; DHCP and PXE answer only there."`
	CIDR        netip.Prefix `toml:"cidr" json:"cidr" required:"true" doc:"IPv4 subnet of the provisioning network, e.g. 10.20.0.0/24."`
	ApplianceIP netip.Addr   `toml:"appliance_ip" json:"appliance_ip" required:"true" doc:"The appliance's address on that network."`
	Gateway     netip.Addr   `toml:"gateway" json:"gateway,omitzero" doc:"Default gateway handed to hosts; leave unset for an isolated network."`
	DNS         []netip.Addr `toml:"dns" json:"dns,omitempty" doc:"DNS servers handed to hosts."`
	NTP         []string     `toml:"ntp" json:"ntp,omitempty" doc:"NTP servers (addresses or names) handed to hosts."`
	DHCP        string       `toml:"dhcp" json:"dhcp" required:"true" enum:"full|proxy|off" doc:"full: cairn is the DHCP server; proxy: an existing DHCP server hands out addresses and cairn only adds PXE boot options; off: no DHCP at all."`
	DHCPRange   *Range       `toml:"dhcp_range" json:"dhcp_range,omitempty" doc:"Addresses leased to machines not in hosts/ (discovery). Required when dhcp = \"full\"."`
}

// Range is an inclusive range of IPv4 addresses.
type Range struct {
	Start netip.Addr `toml:"start" json:"start" required:"true" doc:"First address of the range."`
	End   netip.Addr `toml:"end" json:"end" required:"true" doc:"Last address of the range (inclusive)."`
}

// Contains reports whether a lies in the range.
func (r *Range) Contains(a netip.Addr) bool {
	return r != nil && r.Start.Compare(a) <= 0 && a.Compare(r.End) <= 0
}

// Defaults is the [defaults] table of site.toml.
type Defaults struct {
	OS                string   `toml:"os" json:"os,omitempty" pattern:"^[a-z0-9][a-z0-9._-]*$" doc:"Name of the OS image (an [[os_image]] of build.toml) hosts get."`
	Disk              Disk     `toml:"disk" json:"disk,omitzero" doc:"Disk the OS image is written to: a device path or a selector."`
	SSHAuthorizedKeys []string `toml:"ssh_authorized_keys" json:"ssh_authorized_keys,omitempty" doc:"SSH public keys (authorized_keys lines) installed for the admin user of every host."`
	Timezone          string   `toml:"timezone" json:"timezone,omitempty" doc:"IANA time zone, e.g. Europe/Berlin. Default UTC."`
}

// Host is one file under hosts/: one machine.
type Host struct {
	// File is the host's file relative to the site directory, e.g. hosts/a.toml.
	File string `toml:"-" json:"file"`

	Name              string            `toml:"name" json:"name" pattern:"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" doc:"Host name (a DNS label). Default: the file name without .toml."`
	MAC               MAC               `toml:"mac" json:"mac" required:"true" doc:"MAC address of the NIC the host PXE-boots from."`
	IP                netip.Addr        `toml:"ip" json:"ip,omitzero" doc:"Fixed address inside network.cidr, outside network.dhcp_range."`
	Roles             []string          `toml:"roles" json:"roles,omitempty" doc:"Roles (files under roles/, without .toml) whose containers run on the host."`
	OS                string            `toml:"os" json:"os" pattern:"^[a-z0-9][a-z0-9._-]*$" doc:"OS image name; default defaults.os."`
	Disk              Disk              `toml:"disk" json:"disk" doc:"Target disk; default defaults.disk."`
	Provision         int               `toml:"provision" json:"provision" min:"0" doc:"Provisioning counter. Raising it asks for a destructive re-provision (the disk is rewritten)."`
	Labels            map[string]string `toml:"labels" json:"labels,omitempty" doc:"Free-form key/value labels."`
	SSHAuthorizedKeys []string          `toml:"ssh_authorized_keys" json:"ssh_authorized_keys,omitempty" doc:"Extra SSH public keys for this host, added to defaults.ssh_authorized_keys."`
	Timezone          string            `toml:"timezone" json:"timezone" doc:"IANA time zone; default defaults.timezone."`
	Partitions        []Partition       `toml:"partition" json:"partitions,omitempty" doc:"Extra partitions created in the space after the OS image, in order."`
}

// Partition is one [[partition]] of a host.
type Partition struct {
	Label      string `toml:"label" json:"label" required:"true" pattern:"^[A-Za-z0-9_-]{1,36}$" doc:"GPT partition label."`
	Size       Size   `toml:"size" json:"size,omitzero" doc:"Size such as \"20GiB\"; omit on the last partition to take the rest of the disk."`
	Filesystem string `toml:"filesystem" json:"filesystem" enum:"ext4|xfs|vfat|swap|none" doc:"Filesystem to create; default ext4."`
	Mount      string `toml:"mount" json:"mount,omitempty" doc:"Absolute mount point; not for swap or none."`
}

// Role is one file under roles/: a set of containers hosts take on by naming the role.
type Role struct {
	Name        string      `toml:"-" json:"name"`
	File        string      `toml:"-" json:"file"`
	Description string      `toml:"description" json:"description,omitempty" doc:"What the role is for."`
	Containers  []Container `toml:"container" json:"containers" doc:"Containers every host with this role runs."`

	doc *tomlpos.Document // the file as parsed, for positions in later checks (ResolveImages)
}

// Container is one [[container]] of a role.
type Container struct {
	Name       string            `toml:"name" json:"name" required:"true" pattern:"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$" doc:"Container name, unique on each host that runs it."`
	Image      Image             `toml:"image" json:"image" required:"true" doc:"Image reference, e.g. docker.io/library/nginx:1.27 or ...@sha256:...; it must be in the bundle."`
	Entrypoint []string          `toml:"entrypoint" json:"entrypoint,omitempty" doc:"Overrides the image's entrypoint."`
	Command    []string          `toml:"command" json:"command,omitempty" doc:"Overrides the image's command (arguments to the entrypoint)."`
	Env        map[string]string `toml:"env" json:"env,omitempty" doc:"Environment variables."`
	Ports      []Port            `toml:"ports" json:"ports,omitempty" doc:"Published ports: [IP:]HOST:CONTAINER[/tcp|udp|sctp]; ranges as 8000-8009:8000-8009."`
	Volumes    []Volume          `toml:"volumes" json:"volumes,omitempty" doc:"Mounts: /host/path:/container/path[:options] or name:/container/path[:options]."`
	Network    string            `toml:"network" json:"network" enum:"bridge|host|none" doc:"Network mode; default bridge."`
	User       string            `toml:"user" json:"user,omitempty" doc:"User (and group) to run as, e.g. 1000:1000."`
	Restart    string            `toml:"restart" json:"restart" enum:"always|on-failure|on-abnormal|on-abort|on-success|on-watchdog|no" doc:"systemd Restart= policy of the container's unit; default always."`
	Health     *Health           `toml:"health" json:"health,omitempty" doc:"Health check run inside the container."`
	Files      []File            `toml:"file" json:"files,omitempty" doc:"Files from the site directory mounted read-only into the container."`
}

// Health is the [container.health] table.
type Health struct {
	Command     []string `toml:"command" json:"command" required:"true" doc:"Command run inside the container; exit 0 means healthy."`
	Interval    Duration `toml:"interval" json:"interval,omitzero" doc:"Time between checks, e.g. \"30s\"; default 30s."`
	Timeout     Duration `toml:"timeout" json:"timeout,omitzero" doc:"Time a check may take; default 10s."`
	Retries     int      `toml:"retries" json:"retries,omitzero" min:"1" doc:"Failures in a row before the container counts as unhealthy; default 3."`
	StartPeriod Duration `toml:"start_period" json:"start_period,omitzero" doc:"Grace period after start during which failures do not count."`
}

// File is a [[container.file]]: a file of the site directory mounted read-only.
type File struct {
	Source string `toml:"source" json:"source" required:"true" doc:"Path relative to the site directory; it may not leave it (symlinks included)."`
	Target string `toml:"target" json:"target" required:"true" doc:"Absolute path inside the container."`
	// SHA256 and Data are the file's content when the site was loaded.
	SHA256 string `toml:"-" json:"sha256"`
	Data   []byte `toml:"-" json:"-"`
}
