package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/cairn-appliance/cairn/airgap"
)

// sealedStore writes a small signed store and returns its directory, the public key file and
// the digest of one layer of the image docker.io/library/app:1.
func sealedStore(t *testing.T) (dir, pubPath, layer string) {
	t.Helper()
	keys := t.TempDir()
	prefix := filepath.Join(keys, "site")
	if code, out, errOut := cairn(t, "bundle", "keygen", "--out", prefix); code != exitOK {
		t.Fatalf("cairn bundle keygen = exit %d\n%s%s", code, out, errOut)
	}
	priv, err := airgap.LoadPrivateKey(prefix + ".key")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dir = t.TempDir()
	s, err := airgap.Create(ctx, airgap.StoreConfig{Dir: dir, Created: time.Unix(1_700_000_000, 0)})
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddImage(ctx, "app:1", img); err != nil {
		t.Fatal(err)
	}
	kernel := filepath.Join(t.TempDir(), "vmlinuz")
	if err := os.WriteFile(kernel, []byte(strings.Repeat("k", 3000)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.AddNetboot(ctx, airgap.NetbootAsset{Name: "debian/vmlinuz", Path: kernel, Type: airgap.NetbootKernel}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Seal(ctx, priv); err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return dir, prefix + ".pub", m.Layers[0].Digest.String()
}

func TestBundleVerify(t *testing.T) {
	blob := func(dir, d string) string {
		h := strings.TrimPrefix(d, "sha256:")
		return filepath.Join(dir, "docker/registry/v2/blobs/sha256", h[:2], h, "data")
	}
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, dir, layer string)
		want   int
		says   []string
	}{
		{name: "untouched", want: exitOK, says: []string{"intact", "MB/s"}},
		{
			name: "one byte flipped",
			tamper: func(t *testing.T, dir, layer string) {
				b, err := os.ReadFile(blob(dir, layer))
				if err != nil {
					t.Fatal(err)
				}
				b[100] ^= 0xff
				if err := os.WriteFile(blob(dir, layer), b, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: exitFailed,
			says: []string{"docker.io/library/app:1", "hashes to"},
		},
		{
			name: "blob deleted",
			tamper: func(t *testing.T, dir, layer string) {
				if err := os.Remove(blob(dir, layer)); err != nil {
					t.Fatal(err)
				}
			},
			want: exitFailed,
			says: []string{"docker.io/library/app:1", "missing from the store"},
		},
		{
			name: "bundle.json edited",
			tamper: func(t *testing.T, dir, _ string) {
				p := filepath.Join(dir, "bundle.json")
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				b = []byte(strings.Replace(string(b), `"kind":"netboot"`, `"kind":"file"`, 1))
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: exitFailed,
			says: []string{"bundle.json", "signature", "netboot/debian/vmlinuz:latest sha256:", "belongs in repository files/debian/vmlinuz"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, pub, layer := sealedStore(t)
			if tc.tamper != nil {
				tc.tamper(t, dir, layer)
			}
			code, out, errOut := cairn(t, "bundle", "verify", dir, "--key", pub)
			if code != tc.want {
				t.Fatalf("cairn bundle verify = exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.want, out, errOut)
			}
			if tc.want != exitOK && !strings.Contains(errOut, layer) && tc.name != "bundle.json edited" {
				t.Errorf("stderr does not name the digest %s:\n%s", layer, errOut)
			}
			for _, s := range tc.says {
				if !strings.Contains(out+errOut, s) {
					t.Errorf("output does not say %q:\nstdout: %s\nstderr: %s", s, out, errOut)
				}
			}
		})
	}
}

func TestBundleCommands(t *testing.T) {
	dir, pub, _ := sealedStore(t)
	prefix := strings.TrimSuffix(pub, ".pub")
	for _, tc := range []struct {
		args []string
		want int
		says string
	}{
		{[]string{"bundle", "inspect", dir}, exitOK, "netboot  netboot/debian/vmlinuz"},
		{[]string{"bundle", "inspect", "--format", "json", dir}, exitOK, `"repository": "docker.io/library/app"`},
		{[]string{"bundle", "inspect", "--format", "yaml", dir}, exitUsage, "--format"},
		{[]string{"bundle", "inspect", t.TempDir()}, exitFailed, "a store written by cairn build"},
		{[]string{"bundle", "inspect"}, exitUsage, "one argument"},
		{[]string{"bundle", "verify", dir}, exitUsage, `"key" not set`},
		{[]string{"bundle", "verify", dir, "--key", prefix + ".key"}, exitUsage, "PUBLIC KEY"},
		{[]string{"bundle", "verify", t.TempDir(), "--key", pub}, exitFailed, "bundle.json"},
		{[]string{"bundle", "verify", "--format", "json", dir, "--key", pub}, exitOK, `"intact": true`},
		{[]string{"bundle", "verify", "--format", "json", t.TempDir(), "--key", pub}, exitFailed, `"artifact": "bundle.json"`},
		{[]string{"bundle", "verify", "--format", "yaml", dir, "--key", pub}, exitUsage, "--format"},
		{[]string{"bundle", "keygen", "--out", prefix}, exitFailed, "already exists"},
		{[]string{"bundle", "serve", dir, "--listen", "nonsense"}, exitUsage, "--listen"},
		{[]string{"bundle", "serve", t.TempDir(), "--listen", "127.0.0.1:0"}, exitFailed, "holds no store"},
		{[]string{"bundle", "nonsense"}, exitUsage, "unknown command"},
	} {
		t.Run(strings.Join(tc.args[:2], " "), func(t *testing.T) {
			code, out, errOut := cairn(t, tc.args...)
			if code != tc.want || !strings.Contains(out+errOut, tc.says) {
				t.Errorf("cairn %s = exit %d, want %d saying %q\nstdout: %s\nstderr: %s", strings.Join(tc.args, " "), code, tc.want, tc.says, out, errOut)
			}
		})
	}
	if fi, err := os.Stat(prefix + ".key"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("private key mode = %v, %v; want 0600", fi.Mode(), err)
	}
}

func TestBundleServe(t *testing.T) {
	dir, _, _ := sealedStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	var errOut strings.Builder
	go func() {
		done <- run(ctx, []string{"bundle", "serve", dir, "--listen", "127.0.0.1:0"}, pw, &errOut)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the serve banner: %v", err)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	i := strings.Index(line, "http://")
	if i < 0 {
		t.Fatalf("serve banner %q names no URL", line)
	}
	base := strings.TrimSpace(line[i:])
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "", http.StatusOK},
		{http.MethodGet, "docker.io/library/app/manifests/1", http.StatusOK},
		{http.MethodPost, "docker.io/library/app/blobs/uploads/", http.StatusMethodNotAllowed},
	} {
		req, err := http.NewRequest(tc.method, base+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s = %d, want %d", tc.method, base+tc.path, resp.StatusCode, tc.want)
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("cairn bundle serve stopped with exit %d, want 0; stderr: %s", code, errOut.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("cairn bundle serve did not stop after its context ended")
	}
}
