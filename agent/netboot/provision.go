package netboot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/agent/configdrive"
	"github.com/cairn-appliance/cairn/agent/disk"
	"github.com/cairn-appliance/cairn/agent/image"
)

// ConfigDriveSize is the size of the configdrive partition at the end of the disk.
const ConfigDriveSize = 16 << 20

// holdHead is how much of the image's start (the partition table and the boot code) is
// written only once the whole image checked out: a cut attempt leaves a disk nothing boots.
const holdHead = 1 << 20

// stepError is a failed step of a provisioning attempt.
type stepError struct {
	step string
	err  error
}

func (e *stepError) Error() string { return e.step + ": " + e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

func failStep(step string, err error) error { return &stepError{step: step, err: err} }

// provision carries out plan on this machine: it picks the disk, adopts it when it already
// holds this very provisioning, or else wipes it, streams and checks the image, lays out the
// partitions and writes the configdrive. It returns what to report as done.
func provision(ctx context.Context, c *client, plan api.ProvisionPlan, inv api.Inventory, say func(string, ...any), progressEvery time.Duration) (api.Done, error) {
	report := func(step string, percent int, msg string) {
		if err := c.progress(ctx, api.Progress{Step: step, Percent: percent, Message: msg, Time: time.Now()}); err != nil {
			say("cairn-agent: reporting progress: %v", err) // the attempt goes on; done will tell
		}
	}
	im := plan.Image
	need := uint64(max(im.UncompressedSize, 0)) + ConfigDriveSize + 2<<20 //nolint:gosec // clamped
	d, err := disk.Select(plan.Disk, inv.Disks, need)
	if err != nil {
		return api.Done{}, failStep("disk", err)
	}
	dev := d.Path
	say("cairn-agent: disk %s (%s, %s) for %s", dev, sizeIEC(d.SizeBytes), d.Model, plan.Disk)

	if done, ok, err := adopt(plan, dev, say); err != nil {
		say("cairn-agent: looking for an earlier provisioning on %s: %v (writing it)", dev, err)
	} else if ok {
		return done, nil
	}

	report("wiping", 1, "wiping "+dev)
	if err := disk.Wipe(dev); err != nil {
		return api.Done{}, failStep("wiping", err)
	}
	say("cairn-agent: writing %s (%s, %s) onto %s", im.Artifact, im.Format, im.UncompressedDigest, dev)
	report("writing", 2, fmt.Sprintf("%s onto %s", im.Artifact, dev))
	res, err := image.Write(ctx, image.Source{URL: im.URL, Name: im.Artifact, Format: im.Format, Size: im.Size, Digest: im.Digest,
		UncompressedDigest: im.UncompressedDigest, UncompressedSize: im.UncompressedSize}, dev, image.Options{
		HoldHead:      holdHead,
		ProgressEvery: progressEvery,
		Log:           func(f string, a ...any) { say("cairn-agent: "+f, a...) },
		Progress: func(p image.Progress) {
			pct := 2
			if p.Total > 0 {
				pct = 2 + int(90*p.Written/p.Total)
			}
			msg := progressLine(p)
			say("cairn-agent: writing %s", msg)
			report("writing", min(pct, 92), msg)
		},
	})
	if err != nil {
		return api.Done{}, failStep("writing", err)
	}
	rate := 0.0
	if s := res.Elapsed.Seconds(); s > 0 {
		rate = float64(res.Written) / s / 1e6
	}
	written := fmt.Sprintf("%s written and verified in %s (%.1f MB/s, %s of zeros not written, %d resumes)",
		sizeIEC(uint64(res.Written)), res.Elapsed.Round(100*time.Millisecond), rate, sizeIEC(uint64(res.Zero)), res.Resumes) //nolint:gosec // sizes are positive
	say("cairn-agent: %s: %s", res.Digest, written)

	report("partitioning", 94, "the partitions after the image")
	lay, err := disk.Finish(dev, disk.FinishOptions{Extra: plan.Partitions, ConfigDriveSize: ConfigDriveSize})
	if err != nil {
		return api.Done{}, failStep("partitioning", err)
	}
	say("cairn-agent: partitions: %s", layoutSummary(lay))

	report("configdrive", 97, "cloud-init's NoCloud seed")
	rec, _ := json.Marshal(api.Record{Site: plan.Site, Host: plan.Host, Provision: plan.Provision, MAC: inv.MAC, Image: res.Digest})
	files := configdrive.Files{configdrive.UserData: []byte(plan.ConfigDrive.UserData), configdrive.MetaData: []byte(plan.ConfigDrive.MetaData),
		api.RecordFile: append(rec, '\n')}
	if plan.ConfigDrive.NetworkConfig != "" {
		files[configdrive.NetworkConfig] = []byte(plan.ConfigDrive.NetworkConfig)
	}
	if plan.ConfigDrive.Agent != "" {
		files[api.AgentFile] = []byte(plan.ConfigDrive.Agent)
	}
	if err := writeConfigDrive(dev, lay.ConfigDrive, lay.SectorSize, files); err != nil {
		return api.Done{}, failStep("configdrive", err)
	}
	return api.Done{WrittenDigest: res.Digest, Disk: dev, Message: written}, nil
}

// adopt reports done without writing when dev's configdrive records this plan's site, host
// and provision counter: an appliance that forgot the host (restored, replaced) finds it
// provisioned. Only the host agent's file is written again, with the new host token.
func adopt(plan api.ProvisionPlan, dev string, say func(string, ...any)) (api.Done, bool, error) {
	if plan.Site == "" {
		return api.Done{}, false, nil
	}
	part, ok, err := disk.ConfigDrivePart(dev)
	if err != nil || !ok {
		return api.Done{}, false, err
	}
	f, err := os.Open(dev)
	if err != nil {
		return api.Done{}, false, err
	}
	label, files, err := configdrive.Read(f, part.Start, part.Size)
	bps := make([]byte, 2) // the volume's bytes per sector, to write it again alike
	if _, rerr := f.ReadAt(bps, part.Start+11); rerr != nil {
		bps = nil
	}
	_ = f.Close()
	if err != nil {
		return api.Done{}, false, fmt.Errorf("reading the configdrive %s: %w", label, err)
	}
	var rec api.Record
	if err := json.Unmarshal(files[api.RecordFile], &rec); err != nil {
		return api.Done{}, false, nil // not cairn's, or not readable: write the disk
	}
	if rec.Site != plan.Site || rec.Host != plan.Host || rec.Provision != plan.Provision {
		say("cairn-agent: %s holds %s's provision %d of site %q: not this plan's (%s, provision %d of %q): writing it",
			dev, rec.Host, rec.Provision, rec.Site, plan.Host, plan.Provision, plan.Site)
		return api.Done{}, false, nil
	}
	say("cairn-agent: %s already holds this site's configdrive for %s (provision %d, image %s): adopting it, writing nothing but the host token",
		dev, rec.Host, rec.Provision, rec.Image)
	if plan.ConfigDrive.Agent != "" {
		files[api.AgentFile] = []byte(plan.ConfigDrive.Agent)
		sector := int64(512)
		if len(bps) == 2 && int64(bps[0])|int64(bps[1])<<8 == 4096 {
			sector = 4096
		}
		if err := writeConfigDrive(dev, part, sector, files); err != nil {
			return api.Done{}, false, fmt.Errorf("writing the new host token: %w", err)
		}
	}
	return api.Done{WrittenDigest: rec.Image, Adopted: true, Disk: dev,
		Message: "the disk already held this provisioning"}, true, nil
}

// writeConfigDrive writes files as the cidata file system of part, with the disk's logical
// sector size (0 means 512), and syncs.
func writeConfigDrive(dev string, part disk.Part, sectorSize int64, files configdrive.Files) error {
	if sectorSize <= 0 {
		sectorSize = 512
	}
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if err := configdrive.WriteSectors(f, part.Start, part.Size, sectorSize, configdrive.Label, files, time.Now()); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func progressLine(p image.Progress) string {
	s := sizeIEC(uint64(max(p.Written, 0))) //nolint:gosec // clamped
	if p.Total > 0 {
		s += " of " + sizeIEC(uint64(p.Total)) //nolint:gosec // positive
	}
	s += fmt.Sprintf(", %.1f MB/s", p.BytesPerSec/1e6)
	if p.ETA > 0 {
		s += ", " + p.ETA.Round(time.Second).String() + " left"
	}
	if p.Resumes > 0 {
		s += fmt.Sprintf(", %d resumes", p.Resumes)
	}
	return s
}

func layoutSummary(l disk.Layout) string {
	s := l.Table
	if l.Grown != nil {
		s += fmt.Sprintf(", partition %d (%s) grown to %s", l.Grown.Index, l.Grown.Name, sizeIEC(uint64(l.Grown.Size))) //nolint:gosec // positive
	}
	for _, p := range l.Extra {
		s += fmt.Sprintf(", partition %d %s %s", p.Index, p.Name, sizeIEC(uint64(p.Size))) //nolint:gosec // positive
	}
	return s + fmt.Sprintf(", configdrive partition %d (%s)", l.ConfigDrive.Index, sizeIEC(uint64(l.ConfigDrive.Size))) //nolint:gosec // positive
}

// stepOf names the step an error of provision stopped at.
func stepOf(err error) string {
	var se *stepError
	if errors.As(err, &se) {
		return se.step
	}
	return "provisioning"
}
