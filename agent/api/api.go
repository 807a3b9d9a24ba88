// Package api holds the wire types of the agent API, which cairn-agent calls and the daemon
// serves: JSON over HTTP under versioned paths (/agent/v1/...). It stays small, imports only
// the standard library, and holds no logic beyond building paths.
//
// Every call names the machine by the MAC it booted from, in canonical form
// (52:54:00:12:34:56), in the path: /agent/v1/machines/{mac}/{call}.
//
// A call of the provisioning agent carries its one-time provisioning token (the kernel command
// line's cairn.token) as "Authorization: Bearer TOKEN". The token dies when the attempt ends
// (Done or Failed): a repeat gets 401 Unauthorized, as does a missing or wrong token.
//
// A call of the discovery agent carries no token. It may only report the inventory of a
// machine the site does not name; once a site host has its MAC, that call gets 401 too, which
// tells the agent to reboot: the machine boots to be provisioned.
//
// Errors answer with a status other than 2xx and an Error body.
package api

import "time"

// Version is the agent API's version, the v1 of its paths.
const Version = "v1"

// The calls, the last element of a machine's path (see Path).
const (
	// CallInventory: POST an Inventory; the answer is a Registered. Without a token it
	// creates or updates the machine's discovered record.
	CallInventory = "inventory"
	// CallPlan: GET the ProvisionPlan (token required). The host turns provisioning.
	CallPlan = "plan"
	// CallProgress: POST a Progress (token required); the answer is 202 Accepted.
	CallProgress = "progress"
	// CallDone: POST a Done when the disk is written and checked (token required). The token
	// dies; the host turns provisioned and boots from its disk from then on.
	CallDone = "done"
	// CallFailed: POST a Failed when the attempt cannot finish (token required). The token
	// dies; the host turns failed with the reason.
	CallFailed = "failed"
)

// PathPrefix starts every path of the agent API.
const PathPrefix = "/agent/" + Version + "/"

// Path is the path of call for the machine with the given MAC (canonical form).
func Path(mac, call string) string { return PathPrefix + "machines/" + mac + "/" + call }

// MaxBody is the largest request body the daemon reads; a larger one gets 413.
const MaxBody = 1 << 20

// Firmware is how a machine booted.
type Firmware string

// The firmwares.
const (
	BIOS Firmware = "bios"
	UEFI Firmware = "uefi"
)

// Inventory is what the agent found on the machine.
type Inventory struct {
	// MAC is the address the machine booted from (the one in the path).
	MAC         string   `json:"mac"`
	Firmware    Firmware `json:"firmware"`
	NICs        []NIC    `json:"nics"`
	Disks       []Disk   `json:"disks"` // in kernel order
	CPU         CPU      `json:"cpu"`
	MemoryBytes uint64   `json:"memory_bytes"`
	// System names the machine as its firmware does (DMI), when it does.
	System System `json:"system,omitzero"`
	// AgentVersion is cairn-agent's version.
	AgentVersion string `json:"agent_version,omitempty"`
}

// NIC is one network interface.
type NIC struct {
	Name      string   `json:"name"` // the kernel's: eth0, enp1s0
	MAC       string   `json:"mac"`
	Driver    string   `json:"driver,omitempty"`
	SpeedMbps int      `json:"speed_mbps,omitempty"` // 0 when unknown or down
	Carrier   bool     `json:"carrier"`
	Addresses []string `json:"addresses,omitempty"` // CIDR, e.g. 10.20.0.200/24
}

// Disk is one block device that can hold an OS.
type Disk struct {
	Name       string   `json:"name"`              // the kernel's: sda, nvme0n1, vda
	Path       string   `json:"path"`              // /dev/sda
	ByID       []string `json:"by_id,omitempty"`   // /dev/disk/by-id/... links, most specific first
	ByPath     string   `json:"by_path,omitempty"` // /dev/disk/by-path/... link
	SizeBytes  uint64   `json:"size_bytes"`
	Removable  bool     `json:"removable"`
	Rotational bool     `json:"rotational,omitempty"`
	Model      string   `json:"model,omitempty"`
	Serial     string   `json:"serial,omitempty"`
	WWN        string   `json:"wwn,omitempty"`
}

// CPU sums up the processors.
type CPU struct {
	Model   string `json:"model,omitempty"`
	Arch    string `json:"arch"` // GOARCH: amd64, arm64
	Sockets int    `json:"sockets,omitempty"`
	Cores   int    `json:"cores,omitempty"`
	Threads int    `json:"threads"`
}

// System is the machine's DMI identity.
type System struct {
	Vendor  string `json:"vendor,omitempty"`
	Product string `json:"product,omitempty"`
	Serial  string `json:"serial,omitempty"`
	UUID    string `json:"uuid,omitempty"`
}

// Registered answers an Inventory.
type Registered struct {
	Host string `json:"host"` // the record the inventory went to: a site host or discovered-<mac>
	// Discovered is true when the record is a discovered machine (the site does not name it).
	Discovered bool `json:"discovered"`
}

// ImageFormat is how an OS image is encoded.
type ImageFormat string

// The image formats (the store's; see package airgap).
const (
	FormatRaw     ImageFormat = "raw"
	FormatRawZstd ImageFormat = "raw+zstd"
	FormatRawGzip ImageFormat = "raw+gz"
	FormatRawXz   ImageFormat = "raw+xz"
	FormatQcow2   ImageFormat = "qcow2"
)

// MaxZstdWindow is the largest zstd window the agent decodes (its memory stays bounded
// whatever the image's size); cairn build refuses a raw+zstd image with a larger one.
const MaxZstdWindow = 64 << 20

// ProvisionPlan is what the agent writes to the machine.
//
// Before it writes anything, the agent looks for a configdrive on the plan's disk: when its
// record (RecordFile) names this Site, Host and Provision counter, the disk was provisioned
// for this very plan by an appliance that has since forgotten it (restored or replaced). The
// agent then adopts it: it writes nothing but the configdrive's AgentFile (the new host token)
// and reports Done with Adopted set.
type ProvisionPlan struct {
	Site      string `json:"site"` // the site's name (site.toml's [site] name)
	Host      string `json:"host"`
	Provision int    `json:"provision"` // the site's provisioning counter this attempt serves
	Image     Image  `json:"image"`
	// Disk is where the image goes: a device path (/dev/disk/by-id/...) or a selector
	// (first-nonremovable, largest, smallest, serial:..., wwn:..., model:...) the agent
	// resolves against its inventory.
	Disk        string      `json:"disk"`
	Partitions  []Partition `json:"partitions,omitempty"` // created after the image, in order
	ConfigDrive ConfigDrive `json:"configdrive"`
}

// Image is the OS image: one blob of the appliance's registry.
type Image struct {
	Artifact string `json:"artifact"` // the store's name, e.g. debian-12
	// Repository and ManifestDigest name the OCI artifact in the appliance's registry.
	Repository     string `json:"repository"` // os/debian-12
	ManifestDigest string `json:"manifest_digest"`
	// URL fetches the blob: the registry's blob endpoint, which answers Range requests.
	URL    string      `json:"url"`
	Digest string      `json:"digest"` // sha256:... of the blob as served
	Size   int64       `json:"size"`
	Format ImageFormat `json:"format"`
	// UncompressedDigest (sha256:...) and UncompressedSize describe what lands on the disk;
	// for qcow2 the digest is empty and the size is the virtual disk's.
	UncompressedDigest string `json:"uncompressed_digest,omitempty"`
	UncompressedSize   int64  `json:"uncompressed_size"`
}

// Partition is one partition created in the space the image leaves.
type Partition struct {
	Label      string `json:"label"`
	SizeBytes  uint64 `json:"size_bytes,omitempty"` // 0: the rest of the disk
	Filesystem string `json:"filesystem"`           // ext4, xfs, vfat, swap, none
	Mount      string `json:"mount,omitempty"`
}

// ConfigDrive is the cloud-init NoCloud seed the agent writes (a vfat file system labelled
// cidata, on a partition at the end of the disk): file name to content. The agent adds its
// record (RecordFile).
type ConfigDrive struct {
	UserData      string `json:"user-data"`
	MetaData      string `json:"meta-data"`
	NetworkConfig string `json:"network-config,omitempty"`
	// Agent is the host agent's file (AgentFile): the appliance's URL, the host's name and its
	// host token, as JSON (HostAgent).
	Agent string `json:"agent,omitempty"`
}

// The configdrive's files besides cloud-init's.
const (
	// RecordFile is the agent's record of what it wrote (Record, as JSON).
	RecordFile = "cairn.json"
	// AgentFile is ConfigDrive.Agent: what the host agent needs to reach the appliance.
	AgentFile = "cairn-agent.json"
)

// Record is what the configdrive says of the provisioning that wrote it: enough to recognise
// the disk as this site's, for this host and provision counter (see ProvisionPlan).
type Record struct {
	Site      string `json:"site"`
	Host      string `json:"host"`
	Provision int    `json:"provision"`
	MAC       string `json:"mac"`
	// Image is the sha256:... of what was written and checked: the image's uncompressed digest.
	Image string `json:"image"`
}

// HostAgent is the content of AgentFile.
type HostAgent struct {
	Server string `json:"server"` // the daemon's base URL
	Host   string `json:"host"`
	Token  string `json:"token"` // the host token: "Authorization: Bearer TOKEN"
}

// Progress is a report while provisioning. Reports are coalesced: the daemon records at most
// one every few seconds per machine, and every change of Step.
type Progress struct {
	Step    string `json:"step"`    // e.g. partitioning, writing, verifying, configdrive
	Percent int    `json:"percent"` // of the whole attempt, 0-100
	Message string `json:"message,omitempty"`
	// Time is when the agent made the report (its clock may be wrong; the daemon keeps its own).
	Time time.Time `json:"time,omitzero"`
}

// Done reports a finished attempt: the image is written and its digest checked, or the disk
// adopted.
type Done struct {
	// WrittenDigest is the sha256:... of what was written and checked: the image's
	// uncompressed digest. When Adopted, the digest the disk's record names.
	WrittenDigest string `json:"written_digest"`
	// Adopted says the disk already held this plan's provisioning (see ProvisionPlan) and was
	// not written.
	Adopted bool   `json:"adopted,omitempty"`
	Disk    string `json:"disk,omitempty"` // the device written, e.g. /dev/vda
	Message string `json:"message,omitempty"`
}

// Failed reports an attempt that cannot finish.
type Failed struct {
	Reason string `json:"reason"`
	Step   string `json:"step,omitempty"`
}

// Error is the body of every answer that is not 2xx.
type Error struct {
	Error string `json:"error"`
}

// The kernel command line of the netboot agent (see package agent).
const (
	ArgServer = "cairn.server" // http://APPLIANCE:PORT, the daemon's base URL
	ArgMode   = "cairn.mode"   // ModeProvision or ModeDiscover
	ArgToken  = "cairn.token"  // the one-time provisioning token (provision mode only)
	ArgMAC    = "cairn.mac"    // the MAC the machine booted from, canonical form
)

// The agent's modes.
const (
	ModeProvision = "provision"
	ModeDiscover  = "discover"
)
