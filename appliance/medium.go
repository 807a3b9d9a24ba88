package appliance

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// MediumConfig says which medium to look for and where to mount it when nothing has yet.
type MediumConfig struct {
	// Label is the ISO 9660 volume label that cairn build gave the medium.
	Label string
	// MountDir is where FindMedium mounts the medium read-only when no mount of it exists.
	// Empty means /run/cairn/medium.
	MountDir string
	// Poll is how often to look again while the medium has not appeared. Zero means 500ms.
	Poll time.Duration
}

// DefaultMountDir is where FindMedium mounts the medium when live-boot has not.
const DefaultMountDir = "/run/cairn/medium"

// FindMedium returns the directory where the boot medium labelled cfg.Label is mounted. On the
// appliance live-boot has already mounted it (under /run/live/medium); FindMedium finds that
// mount by reading the volume label of every mounted ISO 9660 filesystem's device, so it does not
// depend on live-boot's paths nor on which of a USB stick's device nodes (whole disk or
// partition) was mounted. When no mount has the label, it mounts /dev/disk/by-label/<label>
// read-only at cfg.MountDir. It waits for the device to appear until ctx ends.
func FindMedium(ctx context.Context, cfg MediumConfig) (string, error) {
	if cfg.Label == "" {
		return "", errors.New("finding the boot medium: no volume label given (medium_label in the daemon config)")
	}
	poll := cfg.Poll
	if poll <= 0 {
		poll = 500 * time.Millisecond
	}
	mountDir := cfg.MountDir
	if mountDir == "" {
		mountDir = DefaultMountDir
	}
	for {
		dir, err := findMounted(cfg.Label)
		if err != nil {
			return "", err
		}
		if dir != "" {
			return dir, nil
		}
		dev := filepath.Join("/dev/disk/by-label", escapeLabel(cfg.Label))
		if _, err := os.Stat(dev); err == nil {
			if err := mountISO(dev, mountDir); err != nil {
				return "", fmt.Errorf("mounting the boot medium %s (label %q) at %s: %w", dev, cfg.Label, mountDir, err)
			}
			return mountDir, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("finding the boot medium: no device has volume label %q (looked at mounted ISO 9660 filesystems and /dev/disk/by-label): %w", cfg.Label, ctx.Err())
		case <-time.After(poll):
		}
	}
}

// findMounted returns the mount point of an ISO 9660 filesystem whose device has label, or "".
func findMounted(label string) (string, error) {
	mounts, err := readMountinfo("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("finding the boot medium: reading /proc/self/mountinfo: %w", err)
	}
	for _, m := range mounts {
		if m.fstype != "iso9660" || !strings.HasPrefix(m.source, "/dev/") {
			continue
		}
		got, err := ReadISOLabel(m.source)
		if err == nil && got == label {
			return m.point, nil
		}
	}
	return "", nil
}

type mount struct{ point, fstype, source string }

func readMountinfo(path string) ([]mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMountinfo(f)
}

// parseMountinfo reads the format of proc(5) /proc/PID/mountinfo.
func parseMountinfo(r io.Reader) ([]mount, error) {
	var out []mount
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || len(fields) < sep+3 {
			return nil, fmt.Errorf("malformed line %q", sc.Text())
		}
		out = append(out, mount{point: unescapeMount(fields[4]), fstype: fields[sep+1], source: unescapeMount(fields[sep+2])})
	}
	return out, sc.Err()
}

// unescapeMount undoes the octal escapes (\040 for a space) of mountinfo fields.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// escapeLabel spells a label the way udev names its /dev/disk/by-label link: bytes outside
// [A-Za-z0-9#+-.:=@_] become \xNN.
func escapeLabel(label string) string {
	var b strings.Builder
	for i := 0; i < len(label); i++ {
		c := label[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("#+-.:=@_", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, `\x%02x`, c)
	}
	return b.String()
}

// ISO 9660: the primary volume descriptor is sector 16 (2048-byte sectors); type 1, "CD001",
// and the 32-byte volume identifier at offset 40, padded with spaces.
const (
	pvdOffset = 16 * 2048
	pvdSize   = 2048
)

// ReadISOLabel returns the volume identifier of the ISO 9660 filesystem in the file or block
// device at path.
func ReadISOLabel(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	buf := make([]byte, pvdSize)
	if _, err := f.ReadAt(buf, pvdOffset); err != nil {
		return "", fmt.Errorf("%s: reading the ISO 9660 volume descriptor: %w", path, err)
	}
	if buf[0] != 1 || !bytes.Equal(buf[1:6], []byte("CD001")) {
		return "", fmt.Errorf("%s: no ISO 9660 primary volume descriptor at sector 16", path)
	}
	return strings.TrimRight(string(buf[40:72]), " \x00"), nil
}

func mountISO(dev, dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	return unix.Mount(dev, dir, "iso9660", unix.MS_RDONLY|unix.MS_NODEV|unix.MS_NOSUID, "")
}
