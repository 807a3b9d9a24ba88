package netboot

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/agent/configdrive"
	"github.com/cairn-appliance/cairn/agent/disk"
)

// osImage makes a small OS image as cairn's store carries one: a GPT disk of size bytes whose
// one Linux partition holds some data, and its zstd form.
func osImage(t *testing.T, size int64) (raw, zst []byte) {
	t.Helper()
	if _, err := exec.LookPath("sfdisk"); err != nil {
		t.Skip("sfdisk (util-linux) makes the test's OS image: not installed")
	}
	p := filepath.Join(t.TempDir(), "os.img")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sfdisk", "--quiet", p)
	cmd.Stdin = strings.NewReader("label: gpt\nlabel-id: 6A1D3C1E-0000-4000-8000-000000000001\nstart=2048, type=L, name=root\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v: %s", err, out)
	}
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(2 << 20); i < size-(1<<20); i += 4096 { // a pattern in the partition, with zero runs
		if (i/4096)%3 != 0 {
			copy(raw[i:], bytes.Repeat([]byte{byte(i >> 12), 0x5a}, 2048))
		}
	}
	enc, _ := zstd.NewWriter(nil)
	return raw, enc.EncodeAll(raw, nil)
}

func digest(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

// provisionFixture serves an OS image and gives a plan for it and a disk file to write.
func provisionFixture(t *testing.T) (api.ProvisionPlan, []byte, string, fakeMachine) {
	t.Helper()
	raw, zst := osImage(t, 8<<20)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "os.raw.zst", time.Time{}, bytes.NewReader(zst))
	}))
	t.Cleanup(srv.Close)
	diskPath := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(diskPath, bytes.Repeat([]byte{0xee}, 1<<20), 0o644); err != nil { // an old install's leftovers
		t.Fatal(err)
	}
	if err := os.Truncate(diskPath, 64<<20); err != nil {
		t.Fatal(err)
	}
	plan := api.ProvisionPlan{Site: "rack1", Host: "web-01", Provision: 1, Disk: "first-nonremovable",
		Image: api.Image{Artifact: "debian-13", URL: srv.URL + "/v2/os/debian-13/blobs/" + digest(zst), Format: api.FormatRawZstd,
			Size: int64(len(zst)), Digest: digest(zst), UncompressedDigest: digest(raw), UncompressedSize: int64(len(raw))},
		ConfigDrive: api.ConfigDrive{UserData: "#cloud-config\n{\"hostname\":\"web-01\"}\n", MetaData: "{\"instance-id\":\"web-01-p1-1\"}\n",
			NetworkConfig: "{\"version\":2}\n", Agent: "{\"host\":\"web-01\",\"token\":\"first\"}\n"}}
	m := fakeMachine{disks: []api.Disk{{Name: "vda", Path: diskPath, SizeBytes: 64 << 20}}}
	return plan, raw, diskPath, m
}

func provisionAnswers(plan api.ProvisionPlan) map[string][]answer {
	return map[string][]answer{
		"inventory": {{http.StatusOK, api.Registered{Host: plan.Host}}},
		"plan":      {{http.StatusOK, plan}},
		"progress":  {{http.StatusAccepted, struct{}{}}},
		"done":      {{http.StatusOK, struct{}{}}},
		"failed":    {{http.StatusOK, struct{}{}}},
	}
}

// configDriveFiles reads the configdrive back from the disk.
func configDriveFiles(t *testing.T, diskPath string) (disk.Part, configdrive.Files) {
	t.Helper()
	part, ok, err := disk.ConfigDrivePart(diskPath)
	if err != nil || !ok {
		t.Fatalf("no configdrive on the disk: %v", err)
	}
	f, err := os.Open(diskPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	label, files, err := configdrive.Read(f, part.Start, part.Size)
	if err != nil || !strings.EqualFold(label, "cidata") {
		t.Fatalf("reading the configdrive: label %q, %v", label, err)
	}
	return part, files
}

// TestProvisionWritesTheDisk runs a whole attempt against a disk file: the image is written
// and checked, the configdrive holds the plan's files and the agent's record, and done
// reports the digest. A second attempt of the same plan adopts the disk and writes nothing
// before the configdrive; a raised provision counter writes it again.
func TestProvisionWritesTheDisk(t *testing.T) {
	plan, raw, diskPath, m := provisionFixture(t)
	end, err, f, out := run(t, api.ModeProvision, token, m, provisionAnswers(plan))
	if end != Reboot || err != nil {
		t.Fatalf("Run() = %v, %v; want Reboot, nil\n%s", end, err, out)
	}
	var done api.Done
	if err := json.Unmarshal(f.bodies["done"], &done); err != nil || done.WrittenDigest != plan.Image.UncompressedDigest || done.Adopted || done.Disk != diskPath {
		t.Fatalf("done reported %s (%v); want the image's digest %s on %s\n%s", f.bodies["done"], err, plan.Image.UncompressedDigest, diskPath, out)
	}
	got, err := os.ReadFile(diskPath)
	if err != nil {
		t.Fatal(err)
	}
	// The partition's bytes are the image's (the tables around them are cairn's now).
	if !bytes.Equal(got[2<<20:len(raw)-(1<<20)], raw[2<<20:len(raw)-(1<<20)]) {
		t.Errorf("the root partition's bytes differ from the image's")
	}
	if !bytes.Equal(got[446:512], raw[446:512]) && got[510] != 0x55 {
		t.Errorf("no protective MBR at the start of the disk")
	}
	part, files := configDriveFiles(t, diskPath)
	if string(files["user-data"]) != plan.ConfigDrive.UserData || string(files["meta-data"]) != plan.ConfigDrive.MetaData ||
		string(files["network-config"]) != plan.ConfigDrive.NetworkConfig || string(files[api.AgentFile]) != plan.ConfigDrive.Agent {
		t.Errorf("the configdrive's files: %q", files)
	}
	var rec api.Record
	if err := json.Unmarshal(files[api.RecordFile], &rec); err != nil || rec != (api.Record{Site: "rack1", Host: "web-01", Provision: 1, MAC: mac, Image: plan.Image.UncompressedDigest}) {
		t.Errorf("the record: %s (%v)", files[api.RecordFile], err)
	}
	if part.Size != ConfigDriveSize || part.Start+part.Size > 64<<20 || part.Start < 64<<20-ConfigDriveSize-2<<20 {
		t.Errorf("the configdrive partition is at %d+%d, want the end of the 64 MiB disk", part.Start, part.Size)
	}
	for _, want := range []string{"written and verified", "configdrive partition", "reported done to http://"} {
		if !strings.Contains(out, want) {
			t.Errorf("the console does not show %q:\n%s", want, out)
		}
	}

	// The same plan again, with a new host token: adopted, nothing written before the
	// configdrive, the token replaced.
	before := got[:part.Start]
	plan.ConfigDrive.Agent = "{\"host\":\"web-01\",\"token\":\"second\"}\n"
	plan.ConfigDrive.MetaData = "{\"instance-id\":\"web-01-p1-2\"}\n"
	end, err, f, out = run(t, api.ModeProvision, token, m, provisionAnswers(plan))
	if end != Reboot || err != nil {
		t.Fatalf("adopting: Run() = %v, %v\n%s", end, err, out)
	}
	done = api.Done{}
	if err := json.Unmarshal(f.bodies["done"], &done); err != nil || !done.Adopted || done.WrittenDigest != plan.Image.UncompressedDigest {
		t.Fatalf("adopting: done reported %s (%v)\n%s", f.bodies["done"], err, out)
	}
	after, _ := os.ReadFile(diskPath)
	if !bytes.Equal(after[:part.Start], before) {
		t.Errorf("adopting wrote the disk before its configdrive")
	}
	_, files = configDriveFiles(t, diskPath)
	if string(files[api.AgentFile]) != plan.ConfigDrive.Agent || string(files["meta-data"]) == plan.ConfigDrive.MetaData {
		t.Errorf("adopting: the agent file %q (want the new token) and meta-data %q (want the old instance-id)", files[api.AgentFile], files["meta-data"])
	}

	// The control: a raised provision counter is not this disk's provisioning: written again.
	plan.Provision = 2
	end, err, f, out = run(t, api.ModeProvision, token, m, provisionAnswers(plan))
	if end != Reboot || err != nil {
		t.Fatalf("provision 2: Run() = %v, %v\n%s", end, err, out)
	}
	done = api.Done{}
	if err := json.Unmarshal(f.bodies["done"], &done); err != nil || done.Adopted {
		t.Errorf("provision 2: done reported %s (%v), want written", f.bodies["done"], err)
	}
	if !strings.Contains(out, "not this plan's") {
		t.Errorf("provision 2: the console does not say why the disk is written again:\n%s", out)
	}
}

// TestProvisionBadImage: a byte flipped in the image served fails the attempt at writing,
// names the image and its digest, reports no done, and leaves the disk's start zero: nothing
// boots from it.
func TestProvisionBadImage(t *testing.T) {
	plan, _, diskPath, m := provisionFixture(t)
	plan.Image.UncompressedDigest = digest([]byte("another image"))
	end, err, f, out := run(t, api.ModeProvision, token, m, provisionAnswers(plan))
	if end != Reboot || err == nil {
		t.Fatalf("Run() = %v, %v; want Reboot and an error\n%s", end, err, out)
	}
	if _, ok := f.bodies["done"]; ok {
		t.Fatalf("a bad image was reported done:\n%s", out)
	}
	var failed api.Failed
	if err := json.Unmarshal(f.bodies["failed"], &failed); err != nil || failed.Step != "writing" ||
		!strings.Contains(failed.Reason, "debian-13") || !strings.Contains(failed.Reason, plan.Image.UncompressedDigest) {
		t.Errorf("the failure reported: %s (%v)", f.bodies["failed"], err)
	}
	got, _ := os.ReadFile(diskPath)
	if !bytes.Equal(got[:1<<20], make([]byte, 1<<20)) {
		t.Errorf("the disk's first MiB is not zero after a failed write")
	}
	if _, ok, _ := disk.ConfigDrivePart(diskPath); ok {
		t.Errorf("a failed write left a configdrive")
	}
	// The control is TestProvisionWritesTheDisk: the same fixture with the right digest is done.
}
