package airgap_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/airgap"
)

func TestKeys(t *testing.T) {
	privPEM, pubPEM, err := airgap.GenerateKey()
	must(t, err)
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"public as private", func() error { _, err := airgap.ParsePrivateKey(pubPEM); return err }(), `"PRIVATE KEY"`},
		{"private as public", func() error { _, err := airgap.ParsePublicKey(privPEM); return err }(), `"PUBLIC KEY"`},
		{"garbage", func() error { _, err := airgap.ParsePublicKey([]byte("ssh-ed25519 AAAA")); return err }(), "PEM"},
		{"missing file", func() error { _, err := airgap.LoadPublicKey("/nonexistent/k.pub"); return err }(), "reading verification key"},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, tc.err, tc.want)
		}
	}
}

// TestSignatureOpenSSL checks the claim in sign.go: a store can be checked without cairn.
func TestSignatureOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed")
	}
	privPEM, pubPEM, err := airgap.GenerateKey()
	must(t, err)
	priv, err := airgap.ParsePrivateKey(privPEM)
	must(t, err)
	keys := t.TempDir()
	pub := write(t, keys, "k.pub", pubPEM)
	dir := t.TempDir()
	s, err := airgap.Create(context.Background(), airgap.StoreConfig{Dir: dir})
	must(t, err)
	_, err = s.Seal(context.Background(), priv)
	must(t, err)
	pubKey, err := airgap.ParsePublicKey(pubPEM)
	must(t, err)
	if _, err := airgap.Verify(context.Background(), dir, pubKey); err != nil {
		t.Errorf("Verify(empty sealed store) = %v, want nil", err)
	}
	out, err := exec.Command(openssl, "pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin",
		"-in", filepath.Join(dir, airgap.IndexFile), "-sigfile", filepath.Join(dir, airgap.SignatureFile)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Signature Verified Successfully") {
		t.Errorf("openssl pkeyutl -verify: %v: %s", err, out)
	}
}

func TestSourceDateEpoch(t *testing.T) {
	for _, tc := range []struct {
		env     string
		want    time.Time
		wantErr bool
	}{
		{"", time.Time{}, false},
		{"1700000000", time.Unix(1700000000, 0).UTC(), false},
		{"0", time.Unix(0, 0).UTC(), false},
		{"17e8", time.Time{}, true},
		{"yesterday", time.Time{}, true},
		{" 1700000000", time.Time{}, true},
	} {
		t.Setenv("SOURCE_DATE_EPOCH", tc.env)
		got, err := airgap.SourceDateEpoch()
		if (err != nil) != tc.wantErr || !got.Equal(tc.want) {
			t.Errorf("SourceDateEpoch() with %q = %v, %v; want %v, error %v", tc.env, got, err, tc.want, tc.wantErr)
		}
	}
}
