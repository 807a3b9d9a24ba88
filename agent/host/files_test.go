package host

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/agent/configdrive"
	"github.com/cairn-appliance/cairn/agent/quadlet"
)

func TestSwap(t *testing.T) {
	root := t.TempDir()
	unitDir := filepath.Join(root, "etc/containers/systemd/cairn")
	staging := filepath.Join(root, "etc/containers/cairn-staging")
	read := func() string {
		u, err := readUnits(unitDir)
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for n, b := range u {
			s = append(s, n+"="+string(b))
		}
		return strings.Join(s, ",")
	}
	// No unit directory yet: a rename.
	if err := stage(filepath.Join(staging, "gen-1"), []quadlet.Unit{{Name: "a.container", Data: []byte("1")}}); err != nil {
		t.Fatal(err)
	}
	if err := swap(filepath.Join(staging, "gen-1"), unitDir); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "a.container=1" {
		t.Errorf("after the first swap: %s", got)
	}
	// Then an exchange, and the old copy goes.
	if err := stage(filepath.Join(staging, "gen-2"), []quadlet.Unit{{Name: "b.container", Data: []byte("2")}}); err != nil {
		t.Fatal(err)
	}
	if err := swap(filepath.Join(staging, "gen-2"), unitDir); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "b.container=2" {
		t.Errorf("after the second swap: %s", got)
	}
	if ents, _ := os.ReadDir(staging); len(ents) != 0 {
		t.Errorf("the staging directory still holds %d entries", len(ents))
	}
}

func TestStageRefusesPaths(t *testing.T) {
	for _, n := range []string{"../x.container", ".hidden", "a/b.container", ""} {
		if err := stage(filepath.Join(t.TempDir(), "s"), []quadlet.Unit{{Name: n}}); err == nil {
			t.Errorf("stage(%q) succeeded", n)
		}
	}
}

func TestConfigPathsStayUnderConfigDir(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"/etc/passwd", dir + "/../x", dir, "relative/x"} {
		if err := writeConfigs(dir, []quadlet.Config{{Path: p, Data: []byte("x")}}); err == nil {
			t.Errorf("writeConfigs(%q) succeeded", p)
		}
	}
}

func TestAgentFile(t *testing.T) {
	ha := `{"server":"http://10.20.0.1:8080","host":"h1","token":"tok"}`
	// The configdrive as the netboot agent writes it: a FAT volume labelled cidata.
	dev := filepath.Join(t.TempDir(), "cidata.img")
	f, err := os.Create(dev)
	if err != nil {
		t.Fatal(err)
	}
	files := configdrive.Files{configdrive.UserData: []byte("#cloud-config\n"), configdrive.MetaData: []byte("instance-id: h1\n"), api.AgentFile: []byte(ha)}
	if err := configdrive.Write(f, 0, 16<<20, configdrive.Label, files, time.Unix(1796000000, 0)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got, err := ReadConfigDrive(dev)
	if err != nil || got != (api.HostAgent{Server: "http://10.20.0.1:8080", Host: "h1", Token: "tok"}) {
		t.Errorf("ReadConfigDrive = %+v, %v", got, err)
	}

	plain := filepath.Join(t.TempDir(), "agent.json")
	os.WriteFile(plain, []byte(ha), 0o600)
	if got, err := ReadAgentFile(plain); err != nil || got.Token != "tok" {
		t.Errorf("ReadAgentFile = %+v, %v", got, err)
	}
	for _, bad := range []string{`{"server":"10.0.0.1","host":"h","token":"t"}`, `{"server":"http://a","token":"t"}`, `{"server":"http://a","host":"h"}`, `{`} {
		os.WriteFile(plain, []byte(bad), 0o600)
		if _, err := ReadAgentFile(plain); err == nil {
			t.Errorf("ReadAgentFile(%s) succeeded", bad)
		}
	}
}

type fakeInstaller struct{ calls []string }

func (f *fakeInstaller) Reload(ctx context.Context) error {
	f.calls = append(f.calls, "reload")
	return nil
}
func (f *fakeInstaller) Enable(ctx context.Context, path string) error {
	f.calls = append(f.calls, "enable "+filepath.Base(path))
	return nil
}
func (f *fakeInstaller) Restart(ctx context.Context, unit string) (string, error) {
	f.calls = append(f.calls, "restart "+unit)
	return JobDone, nil
}

func TestInstall(t *testing.T) {
	path := filepath.Join(t.TempDir(), "etc/systemd/system", ServiceName)
	var fi fakeInstaller
	if err := Install(context.Background(), &fi, path, "/usr/local/bin/cairn-agent", "--config", "/etc/cairn/agent.json"); err != nil {
		t.Fatal(err)
	}
	equalCalls(t, "install", fi.calls, []string{"reload", "enable cairn-agent.service", "restart cairn-agent.service"})
	b, _ := os.ReadFile(path)
	for _, want := range []string{
		"ExecStart=/usr/local/bin/cairn-agent host run --config /etc/cairn/agent.json\n",
		"Restart=always\n", "After=network-online.target\n", "Wants=network-online.target\n", "WantedBy=multi-user.target\n",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the unit lacks %q:\n%s", want, b)
		}
	}
	if err := Install(context.Background(), &fi, path, "cairn-agent"); err == nil {
		t.Error("Install with a relative binary succeeded")
	}
	if _, err := ServiceUnit("/opt/my agent"); err == nil {
		t.Error("ServiceUnit with a space in the path succeeded")
	}
}

func TestServiceOf(t *testing.T) {
	for in, want := range map[string]string{
		"cairn-web.container": "cairn-web.service",
		"data.volume":         "data-volume.service",
		"net.network":         "net-network.service",
		"x.service":           "x.service",
	} {
		if got := serviceOf(in); got != want {
			t.Errorf("serviceOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStateModes(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "var/lib/cairn/agent")
	if err := writeJSON(dir, currentFile, map[string]string{"secret": "x"}); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{
		dir:                             0o700 | os.ModeDir,
		filepath.Join(dir, currentFile): 0o600,
	} {
		if fi, err := os.Stat(path); err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v, %v; want %v", path, fi.Mode(), err, want)
		}
	}
}
