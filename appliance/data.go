package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// The data disk: the file system that keeps what the appliance learns (its state, the site
// directory, the upper store) across reboots, mounted at DataDir.
const (
	// DataLabel is the data disk's file system label; the appliance mounts the file system
	// with this label unless the kernel command line names another device (DataArg).
	DataLabel = "CAIRN-DATA"
	// DataArg names the kernel argument that says where the data disk is instead:
	// cairn.data=/dev/vdb, cairn.data=LABEL=x, cairn.data=UUID=x or cairn.data=PARTUUID=x;
	// cairn.data=none runs without one (ephemeral) and waits for none at boot.
	DataArg = "cairn.data"
	// DataDir is where the data disk is mounted.
	DataDir = "/var/lib/cairn"
	// DataMountUnit is the mount unit DataGenerator writes for DataDir.
	DataMountUnit = "var-lib-cairn.mount"
	// dataDeviceTimeout is how long boot waits for the data disk to appear before the daemon
	// starts without it (ephemeral): systemd's own default for an fstab entry. Shorter, and a
	// loaded machine (or a VM without KVM) whose udev has not yet probed the disk boots
	// ephemeral though its data disk is there. cairn.data=none skips the wait.
	dataDeviceTimeout = "90s"
)

// DataDevice returns the device node the data disk is looked for at, from the kernel command
// line: what cairn.data= names (a /dev path, or LABEL=, UUID=, PARTUUID=, PARTLABEL= as in
// fstab), else the file system labelled DataLabel; "" for cairn.data=none.
func DataDevice(cmdline string) (string, error) {
	v, ok := KernelArg(cmdline, DataArg)
	if !ok {
		return "/dev/disk/by-label/" + escapeLabel(DataLabel), nil
	}
	if v == "none" {
		return "", nil
	}
	for _, tag := range []struct{ key, dir string }{
		{"LABEL=", "by-label"}, {"UUID=", "by-uuid"}, {"PARTUUID=", "by-partuuid"}, {"PARTLABEL=", "by-partlabel"},
	} {
		if rest, ok := strings.CutPrefix(v, tag.key); ok {
			if rest == "" || strings.Contains(rest, "/") {
				return "", fmt.Errorf("kernel argument %s=%s: %s wants a value without '/'", DataArg, v, strings.TrimSuffix(tag.key, "="))
			}
			return "/dev/disk/" + tag.dir + "/" + escapeLabel(rest), nil
		}
	}
	if !strings.HasPrefix(v, "/dev/") || filepath.Clean(v) != v {
		return "", fmt.Errorf("kernel argument %s=%q: expected a device such as /dev/vdb, or LABEL=, UUID=, PARTUUID= or PARTLABEL=", DataArg, v)
	}
	return v, nil
}

// DataGenerator is a systemd generator (systemd.generator(7)): it writes into dir (the
// generator's "normal" directory) the mount unit that mounts the data disk at DataDir, and a
// drop-in that bounds the wait for its device. cairn.service wants the mount and starts after
// it: without a data disk the mount fails after the wait and the daemon starts ephemeral.
func DataGenerator(dir, cmdline string) error {
	dev, err := DataDevice(cmdline)
	if err != nil || dev == "" {
		return err
	}
	devUnit := EscapePath(dev) + ".device"
	mount := fmt.Sprintf(`# Written by cairn's data disk generator from the kernel command line.
[Unit]
Description=cairn data disk (%[1]s)
Documentation=https://github.com/cairn-appliance/cairn/blob/main/docs/appliance.md
Before=cairn.service

[Mount]
What=%[1]s
Where=%[2]s
Type=ext4
Options=noatime
`, dev, DataDir)
	timeout := fmt.Sprintf("# Written by cairn's data disk generator.\n[Unit]\nJobTimeoutSec=%[1]s\nJobRunningTimeoutSec=%[1]s\n", dataDeviceTimeout)
	if err := writeUnit(filepath.Join(dir, DataMountUnit), mount); err != nil {
		return err
	}
	return writeUnit(filepath.Join(dir, devUnit+".d", "cairn-timeout.conf"), timeout)
}

func writeUnit(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil { //nolint:gosec // unit directories are world-readable
		return err
	}
	return os.WriteFile(path, []byte(content), 0o644) //nolint:gosec // unit files are world-readable
}

// EscapePath turns an absolute path into a unit name's stem as systemd-escape --path does:
// "/dev/disk/by-label/CAIRN-DATA" → `dev-disk-by\x2dlabel-CAIRN\x2dDATA`.
func EscapePath(p string) string {
	p = strings.Trim(filepath.Clean(p), "/")
	if p == "" {
		return "-"
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '/':
			b.WriteByte('-')
		case c == '.' && i == 0,
			!(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ':' || c == '_' || c == '.'):
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Signature is something found on a device that preparing it as a data disk would erase: a
// file system, a partition table, a RAID member.
type Signature struct {
	Type   string // "ext4", "gpt", "dos", "iso9660" …
	Label  string
	Offset string
}

func (s Signature) String() string {
	out := s.Type
	if s.Label != "" {
		out += fmt.Sprintf(" labelled %q", s.Label)
	}
	if s.Offset != "" {
		out += " at offset " + s.Offset
	}
	return out
}

// Signatures lists the signatures wipefs finds on dev (a block device or an image file),
// without changing it.
func Signatures(ctx context.Context, dev string) ([]Signature, error) {
	out, err := run(ctx, "wipefs", "--no-act", "--json", dev)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return nil, nil // wipefs prints nothing at all when it finds nothing
	}
	var doc struct {
		Signatures []struct {
			Type   string `json:"type"`
			Label  string `json:"label"`
			Offset string `json:"offset"`
		} `json:"signatures"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("reading what wipefs found on %s: %w", dev, err)
	}
	var sigs []Signature
	for _, s := range doc.Signatures {
		sigs = append(sigs, Signature{Type: s.Type, Label: s.Label, Offset: s.Offset})
	}
	return sigs, nil
}

// ErrNotBlank is returned (wrapped, with what was found) when InitData is asked to prepare a
// device that holds something, without force.
var ErrNotBlank = errors.New("not blank")

// InitData prepares dev (a whole disk, a partition or an image file) as the appliance's data
// disk: an ext4 file system labelled DataLabel. It refuses a device that is mounted, and one
// that holds any file system or partition table unless force is set; then it erases every
// signature first, so that nothing old is found on it again.
func InitData(ctx context.Context, dev string, force bool) error {
	fi, err := os.Stat(dev)
	if err != nil {
		return fmt.Errorf("preparing the data disk: %w", err)
	}
	if !fi.Mode().IsRegular() && fi.Mode()&os.ModeDevice == 0 {
		return fmt.Errorf("%s is neither a block device nor an image file", dev)
	}
	if where, err := mountedFrom(dev); err != nil {
		return err
	} else if where != "" {
		return fmt.Errorf("%s is mounted at %s; unmount it first", dev, where)
	}
	sigs, err := Signatures(ctx, dev)
	if err != nil {
		return err
	}
	if len(sigs) > 0 {
		if !force {
			found := make([]string, len(sigs))
			for i, s := range sigs {
				found[i] = s.String()
			}
			return fmt.Errorf("%s is %w: it holds %s; making it the data disk erases everything on it: add --force to do so",
				dev, ErrNotBlank, strings.Join(found, ", "))
		}
		if _, err := run(ctx, "wipefs", "--all", "--force", "--quiet", dev); err != nil {
			return err
		}
	}
	// -m 0: no blocks reserved for root, who is the only writer. -F: an image file is fine.
	_, err = run(ctx, "mkfs.ext4", "-q", "-F", "-m", "0", "-L", DataLabel, dev)
	return err
}

// mountedFrom returns where dev (or, for a whole disk, one of its partitions) is mounted, ""
// when it is not.
func mountedFrom(dev string) (string, error) {
	real, err := filepath.EvalSymlinks(dev)
	if err != nil {
		return "", err
	}
	mounts, err := readMountinfo("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	for _, m := range mounts {
		src, err := filepath.EvalSymlinks(m.source)
		if err != nil {
			continue
		}
		if src == real || strings.HasPrefix(src, real) && strings.HasPrefix(real, "/dev/") && isPartitionOf(src, real) {
			return m.point, nil
		}
	}
	return "", nil
}

// isPartitionOf reports whether part names a partition of disk (/dev/sda1 of /dev/sda,
// /dev/nvme0n1p1 of /dev/nvme0n1).
func isPartitionOf(part, disk string) bool {
	rest := strings.TrimPrefix(part, disk)
	rest = strings.TrimPrefix(rest, "p")
	_, err := strconv.Atoi(rest)
	return rest != "" && err == nil
}

// DataDisk says whether dir is kept on a disk: it is the mount point of a file system on a
// block device (the data disk), rather than a directory of the live system's overlay, which
// lives in RAM. It returns the device, or "" when dir is not on a disk of its own.
func DataDisk(dir string) (string, error) {
	return dataDisk(dir, "/proc/self/mountinfo")
}

func dataDisk(dir, mountinfo string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	mounts, err := readMountinfo(mountinfo)
	if err != nil {
		return "", fmt.Errorf("reading the mounts: %w", err)
	}
	dev := ""
	for _, m := range mounts { // the last mount at a path is the one seen
		if m.point == abs {
			dev = ""
			if strings.HasPrefix(m.source, "/dev/") {
				dev = m.source
			}
		}
	}
	return dev, nil
}

func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if errors.Is(err, exec.ErrNotFound) {
			msg = "not installed (the appliance and scripts/deps.sh install it)"
		}
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return out, nil
}
