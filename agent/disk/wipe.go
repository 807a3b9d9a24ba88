package disk

import "fmt"

// Wipe removes the signatures of what dev held, so that nothing of a previous install is
// found again: it zeroes the first and the last MiB (the MBR, the primary and the backup
// GPT, the superblocks of most file systems and RAID members of a whole-disk install) with
// BLKZEROOUT on a block device or by writing zeros in a file, and syncs. Signatures inside
// old partitions further in are left: the image overwrites the start of the disk, and
// Finish zeroes the ends of every partition it adds.
func Wipe(dev string) error {
	d, err := open(dev, true)
	if err != nil {
		return fmt.Errorf("wiping: %w", err)
	}
	defer d.Close()
	ss := max(d.sector, 512)
	end := alignDown(d.size, ss) // a file's odd tail is zeroed too, below
	if err := d.zero(0, min(mib, d.size)); err != nil {
		return fmt.Errorf("wiping: %w", err)
	}
	if from := max(end-mib, mib); from < d.size {
		if err := d.zero(from, d.size-from); err != nil {
			return fmt.Errorf("wiping: %w", err)
		}
	}
	if err := d.sync(); err != nil {
		return fmt.Errorf("wiping: %w", err)
	}
	return nil
}
