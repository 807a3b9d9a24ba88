package main

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-appliance/cairn/daemon/api"
	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/site"
)

func TestStatusAndHostShow(t *testing.T) {
	st := state.NewMemory(0)
	_ = st.Update(context.Background(), func(tx state.Tx) error {
		_ = tx.PutHost(state.Host{Name: "web-01", MAC: "52:54:00:20:00:11", IP: "10.20.0.11", Phase: state.Provisioning, Progress: 42, Message: "writing: 1.2 of 2.9 GiB"})
		_ = tx.PutHost(state.Host{Name: "discovered-525400200099", MAC: "52:54:00:20:00:99", Phase: state.Discovered,
			Inventory: []byte(`{"mac":"52:54:00:20:00:99","disks":[{"name":"sda","path":"/dev/sda","by_id":["/dev/disk/by-id/ata-QEMU_HARDDISK_QM00001"],"size_bytes":21474836480}]}`)})
		_ = tx.PutHost(state.Host{Name: "mirror-01", MAC: "52:54:00:20:00:21", Phase: state.Failed, Reason: "no disk"})
		return tx.Append(state.Event{Host: "web-01", Kind: "host.phase", Message: "writing the disk"})
	})
	s, err := site.Load("../../examples/site")
	if err != nil {
		t.Fatal(err)
	}
	h, err := api.New(api.Config{Store: st, Current: func() api.Current { return api.Current{Site: s} }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	code, out, errOut := cairn(t, "status", "--server", srv.URL)
	if code != exitOK {
		t.Fatalf("status: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"site rack1", "web-01", "provisioning", "42% writing: 1.2 of 2.9 GiB", "10.20.0.11", "discovered-525400200099", "writing the disk", "failed (no disk)"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = cairn(t, "host", "show", "web-01", "--server", srv.URL)
	if code != exitOK || !strings.Contains(out, "phase       provisioning") || !strings.Contains(out, "writing the disk") {
		t.Errorf("host show: exit %d\n%s", code, out)
	}
	code, out, _ = cairn(t, "host", "show", "discovered-525400200099", "--server", srv.URL)
	if code != exitOK || !strings.Contains(out, "save this as hosts/NAME.toml") || !strings.Contains(out, `mac = "52:54:00:20:00:99"`) ||
		!strings.Contains(out, `disk = "/dev/disk/by-id/ata-QEMU_HARDDISK_QM00001"`) {
		t.Errorf("host show of a discovered machine: exit %d\n%s", code, out)
	}
	if code, _, errOut := cairn(t, "host", "show", "nope", "--server", srv.URL); code != exitFailed || !strings.Contains(errOut, "no host named") {
		t.Errorf("host show of an unknown host: exit %d: %s", code, errOut)
	}
	if code, _, errOut := cairn(t, "status", "--server", "http://127.0.0.1:1"); code != exitFailed || !strings.Contains(errOut, "is cairn daemon running") {
		t.Errorf("status with no daemon: exit %d: %s", code, errOut)
	}
	if code, _, errOut := cairn(t, "status", "--server", "appliance:5000"); code != exitUsage || !strings.Contains(errOut, `--server: daemon address "appliance:5000": expected a URL such as http://appliance:5000`) {
		t.Errorf("status with a server that is no URL: exit %d: %s", code, errOut)
	}
	if code, _, errOut := cairn(t, "site", "plan", "../../examples/site", "--server", "http://127.0.0.1:1"); code != exitFailed || !strings.Contains(errOut, "is cairn daemon running") {
		t.Errorf("site plan with no daemon: exit %d: %s", code, errOut)
	}
}

func TestHostReprovision(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "site")
	if out, err := exec.Command("cp", "-r", "../../examples/site", dir).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	// mirror-01 says provision = 1; web-01 does not say it at all.
	for _, tt := range []struct {
		host, file string
		want       string
	}{
		{"mirror-01", "hosts/mirror-01.toml", "provision = 2                     # raised once"},
		{"web-01", "hosts/web-01.toml", "provision = 1\nmac ="},
	} {
		code, out, errOut := cairn(t, "host", "reprovision", tt.host, "--site", dir)
		if code != exitOK {
			t.Fatalf("reprovision %s: exit %d: %s", tt.host, code, errOut)
		}
		b, _ := os.ReadFile(filepath.Join(dir, tt.file))
		if !strings.Contains(string(b), tt.want) {
			t.Errorf("%s after reprovision:\n%s\nwant it to contain %q (%s)", tt.file, b, tt.want, out)
		}
	}
	s, err := site.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range s.Hosts {
		if (h.Name == "mirror-01" && h.Provision != 2) || (h.Name == "web-01" && h.Provision != 1) {
			t.Errorf("%s: provision %d after reprovision", h.Name, h.Provision)
		}
	}
	if code, _, _ := cairn(t, "host", "reprovision", "nope", "--site", dir); code != exitFailed {
		t.Errorf("reprovision of an unknown host: exit %d", code)
	}
	if code, _, _ := cairn(t, "host", "reprovision", "web-01"); code != exitUsage {
		t.Errorf("reprovision without --site: exit %d", code)
	}
}
