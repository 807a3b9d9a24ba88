package quadlet

import (
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/cairn-appliance/cairn/agent/api"
)

// TestRegistriesConf has skopeo (containers/image, the library podman reads
// containers-registries.conf(5) with) resolve an image name through the drop-in: the name
// reaches the appliance's registry, which keeps the image under its full name, over plain HTTP.
// (skopeo's docker:// names are never short names, so short-name-mode is podman's alone and
// not tried here.)
func TestRegistriesConf(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("no skopeo: scripts/deps.sh installs it")
		}
		t.Skip("no skopeo: run scripts/deps.sh")
	}
	if testing.Short() {
		t.Skip("runs skopeo: not with -short")
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	appliance := strings.TrimPrefix(srv.URL, "http://")

	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	dg, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	// The appliance serves docker.io/library/nginx as the repository docker.io/library/nginx.
	ref, err := name.ParseReference(appliance+"/docker.io/library/nginx:1.27", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}

	d := &api.Desired{Registry: appliance, Containers: []api.Container{{
		Name: "web", Role: "web", Image: "docker.io/library/nginx:1.27", Digest: dg.String(), Restart: "always",
	}}}
	r := render(t, d)
	conf := filepath.Join(t.TempDir(), "registries.conf")
	if err := os.WriteFile(conf, r.RegistriesConf, 0o644); err != nil {
		t.Fatal(err)
	}
	inspect := func(image string) (string, error) {
		cmd := exec.CommandContext(ctx(t), skopeo, "--registries-conf", conf, "inspect", "--raw", "docker://"+image)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	if out, err := inspect("docker.io/library/nginx@" + dg.String()); err != nil {
		t.Fatalf("skopeo inspect through the drop-in: %v\n%s", err, out)
	}
	// Control: without insecure = true, plain HTTP is refused.
	secure := strings.ReplaceAll(string(r.RegistriesConf), "insecure = true", "insecure = false")
	if err := os.WriteFile(conf, []byte(secure), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := inspect("docker.io/library/nginx@" + dg.String()); err == nil {
		t.Errorf("the image resolves over plain HTTP without insecure = true:\n%s", out)
	}
	if err := os.WriteFile(conf, r.RegistriesConf, 0o644); err != nil {
		t.Fatal(err)
	}
	// Control: with the registry stopped, the same name fails; it went to the appliance.
	srv.Close()
	if out, err := inspect("docker.io/library/nginx@" + dg.String()); err == nil {
		t.Errorf("the image still resolves with the appliance's registry stopped:\n%s", out)
	}
}
