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

// The host agent's calls (decision 9): cairn-agent in host mode, on a provisioned host, names
// the host in the path (HostPath) and carries the host token of its configdrive (AgentFile) as
// "Authorization: Bearer TOKEN". A call for another host, or without the token, gets 401.
const (
	// CallDesired: GET the host's Desired containers. With ?generation=N&wait=SECONDS it
	// long-polls: the answer comes as soon as the host's generation is not N, or after the
	// wait (at most MaxWait) with the same generation; the agent then asks again.
	CallDesired = "desired"
	// CallStatus: POST a HostStatus after every apply and whenever a container changes; the
	// answer is 202 Accepted.
	CallStatus = "status"
)

// HostPath is the path of call for the host agent of host name.
func HostPath(host, call string) string { return PathPrefix + "hosts/" + host + "/" + call }

// MaxWait is the longest a long-polling CallDesired is held.
const MaxWait = 5 * time.Minute

// Desired is what a host must run: the containers of all its roles, sorted by name, each
// image pinned to the digest the appliance's store holds. Generation changes exactly when
// anything else in it does.
type Desired struct {
	Host       string `json:"host"`
	Generation int64  `json:"generation"`
	// Registry is the appliance's registry as the host reaches it (host:port, plain HTTP).
	// Every image name resolves there and nowhere else: registries.conf rewrites each image's
	// registry to it, with no fallback.
	Registry   string      `json:"registry"`
	Containers []Container `json:"containers"`
	// Logs are operators' requests for container logs waiting for this host (not part of
	// the desired state: they do not change Generation).
	Logs []LogRequest `json:"logs,omitempty"`
}

// Container is one container a host runs.
type Container struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// Image is the reference as the site wrote it, normalized (docker.io/library/nginx:1.27);
	// Digest (sha256:...) the manifest it resolved to in the store. Hosts pull Image's name
	// at Digest, never at a tag.
	Image      string            `json:"image"`
	Digest     string            `json:"digest"`
	Entrypoint []string          `json:"entrypoint,omitempty"`
	Command    []string          `json:"command,omitempty"`
	Env        map[string]string `json:"env,omitempty"`
	Ports      []string          `json:"ports,omitempty"`   // [IP:]HOST:CONTAINER/PROTOCOL
	Volumes    []string          `json:"volumes,omitempty"` // SOURCE:TARGET[:OPTIONS]
	Network    string            `json:"network"`           // bridge, host or none
	User       string            `json:"user,omitempty"`
	Restart    string            `json:"restart"` // systemd Restart=
	Health     *Health           `json:"health,omitempty"`
	Files      []File            `json:"files,omitempty"` // sorted by target
}

// Health is a container's health check. Durations are Go durations ("30s").
type Health struct {
	Command     []string `json:"command"`
	Interval    string   `json:"interval"`
	Timeout     string   `json:"timeout"`
	Retries     int      `json:"retries"`
	StartPeriod string   `json:"start_period,omitempty"`
}

// File is a file of the site mounted read-only into a container.
type File struct {
	Target string `json:"target"` // absolute path inside the container
	SHA256 string `json:"sha256"` // hex, of Data
	Data   []byte `json:"data"`
}

// The host's container states, HostStatus.State.
const (
	HostReady     = "ready"     // the applied generation is the desired one and runs healthy
	HostDeploying = "deploying" // a generation is being applied, or a container is not healthy yet
	HostFailed    = "failed"    // the last generation was rolled back; Reason says why
)

// HostStatus is the host agent's report.
type HostStatus struct {
	// Applied is the generation running (the last that applied in full), 0 for none yet;
	// Attempted the last one tried (it equals Applied unless that one failed).
	Applied   int64  `json:"applied"`
	Attempted int64  `json:"attempted"`
	State     string `json:"state"` // HostReady, HostDeploying or HostFailed
	Reason    string `json:"reason,omitempty"`
	// Containers are the containers cairn owns on the host, sorted by name.
	Containers   []ContainerStatus `json:"containers"`
	AgentVersion string            `json:"agent_version,omitempty"`
	Time         time.Time         `json:"time,omitzero"`
}

// ContainerStatus is one container as the host runs it.
type ContainerStatus struct {
	Name     string    `json:"name"`
	Digest   string    `json:"digest,omitempty"` // the image digest it runs
	State    string    `json:"state"`            // podman's: running, exited, created, missing ...
	Health   string    `json:"health,omitempty"` // healthy, unhealthy, starting; "" without a check
	Restarts int       `json:"restarts"`
	Started  time.Time `json:"started,omitzero"`
}

// CallLogs: the host agent POSTs the output of a LogRequest, as it comes (a chunked body of
// plain text), to HostPath(host, CallLogs)+"/"+ID. The daemon hands it to the operator who
// asked; when the operator goes, the POST is cut, and the agent stops reading the logs.
const CallLogs = "logs"

// LogRequest asks the host agent for a container's logs: an operator's cairn host logs. It
// comes with a Desired answer, which a new request wakes from its long poll.
type LogRequest struct {
	ID        string `json:"id"`
	Container string `json:"container"`
	Follow    bool   `json:"follow,omitempty"`
	Tail      int    `json:"tail,omitempty"` // the last lines only; 0 for all
}
