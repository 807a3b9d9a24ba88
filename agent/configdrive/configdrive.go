// Package configdrive writes and reads the cloud-init NoCloud volume the netboot agent leaves
// on a host's disk: a FAT file system labelled cidata whose root holds user-data, meta-data,
// network-config when there is one, and cairn's own files (agent/api.RecordFile, the record of
// what was written; agent/api.AgentFile, the host agent's).
//
// It is built in Go, without mounting anything: Write lays out a FAT12 or FAT16 file system,
// whichever its cluster count makes (the usual 16 MiB is FAT16 with 512-byte sectors, FAT12
// with 4096-byte ones), in a region of an io.WriterAt, the whole disk at the configdrive
// partition's offset; WriteSectors does the same with 4096-byte sectors for a disk that has
// those. Read reads one back from an io.ReaderAt. The same inputs and modification time give
// the same bytes, the whole region included (free space is zeroed). Names that are not
// upper-case 8.3 names get VFAT long-name entries besides a generated short name (user-data:
// USER-D~1); files sit in the root directory only, each in one contiguous run of clusters.
//
// Read also reads FAT32 and FAT12/16 volumes made by other tools (mkfs.vfat), root directory
// only; subdirectories are skipped. The volume is not a general-purpose FAT driver: it writes
// new volumes whole and never updates one in place.
package configdrive

// Files holds a volume's root files: name to content. Names are case-insensitive on FAT, so
// two names that differ only in case are refused.
type Files map[string][]byte

// The files cloud-init's NoCloud datasource reads; user-data and meta-data are required.
const (
	UserData      = "user-data"
	MetaData      = "meta-data"
	NetworkConfig = "network-config"
	VendorData    = "vendor-data"
)

// Label is the volume label cloud-init's NoCloud datasource looks for.
const Label = "cidata"
