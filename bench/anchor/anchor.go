// Package anchor starts the programs cairn's benchmarks are compared with, on loopback, for
// the length of one benchmark: Debian's docker-registry (distribution 2.8) for now.
package anchor

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// DockerRegistry is where Debian's docker-registry package installs the registry.
const DockerRegistry = "/usr/bin/docker-registry"

// StartDockerRegistry runs docker-registry over the storage root dir (read-only when asked)
// on a free loopback port until the benchmark ends, and returns its host:port. It skips the
// benchmark, saying how to install it, when the registry is not installed.
func StartDockerRegistry(tb testing.TB, root string, readOnly bool) string {
	tb.Helper()
	if _, err := os.Stat(DockerRegistry); err != nil {
		tb.Skipf("%s is not installed; it is this benchmark's anchor: run scripts/deps.sh (or apt-get install docker-registry)", DockerRegistry)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	conf := filepath.Join(tb.TempDir(), "docker-registry.yml")
	err = os.WriteFile(conf, []byte(fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  maintenance:
    uploadpurging:
      enabled: false
    readonly:
      enabled: %t
  cache:
    blobdescriptor: inmemory
  redirect:
    disable: true
http:
  addr: %s
`, root, readOnly, addr)), 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	var logs strings.Builder
	cmd := exec.Command(DockerRegistry, "serve", conf) //nolint:gosec // a fixed program and the config this function wrote
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting docker-registry: %v", err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("docker-registry did not answer on %s within 15s: %v\n%s", addr, err, logs.String())
		}
	}
}
