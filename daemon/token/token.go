// Package token mints and checks the secrets the agent API asks for: a random token is handed
// to a machine once (on its netboot kernel command line, or in its configdrive) and only its
// sha256 is kept in the state, so a copy of the state lets no one in.
//
// An Issuer refuses to mint a provisioning token while the appliance is ephemeral (it keeps
// its state in RAM and would forget, at its next reboot, which disks it has written), unless
// the daemon's configuration allows it.
//
// It does not serve the agent API, nor decide when a token is due (the PXE layer does).
package token

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/cairn-appliance/cairn/daemon/state"
)

// ErrEphemeral is returned when a provisioning token is asked for while the appliance has no
// data disk and its configuration does not allow provisioning anyway.
var ErrEphemeral = errors.New("token: the appliance is ephemeral (no data disk: its state is lost at reboot), so it provisions no host; " +
	"prepare a data disk with cairn appliance data init DEVICE, or set allow_ephemeral = true in daemon.toml for a demo")

// New returns a fresh token (32 random bytes, URL-safe base64, fit for a kernel command line)
// and the hash the state keeps of it.
func New() (token, hash string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, Hash(token)
}

// Hash is what the state keeps of token: its sha256, in hex.
func Hash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Matches reports whether presented is the token whose hash is kept, in constant time. An
// empty hash (no token was ever handed out) matches nothing.
func Matches(hash, presented string) bool {
	if hash == "" || presented == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(hash), []byte(Hash(presented))) == 1
}

// Issuer mints tokens into the state.
type Issuer struct {
	Store state.Store
	// Ephemeral refuses provisioning tokens (see ErrEphemeral).
	Ephemeral bool
}

// Provisioning mints the one-time provisioning token of host for a new provisioning attempt:
// its hash replaces any earlier one in the same transaction, with an event. It refuses, with
// ErrEphemeral and an event, when the appliance is ephemeral.
func (i *Issuer) Provisioning(ctx context.Context, host string) (string, error) {
	tok, hash := New()
	err := i.Store.Update(ctx, func(tx state.Tx) error {
		h, ok, err := tx.Host(host)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("token: no host %q in the state", host)
		}
		if i.Ephemeral {
			return tx.Append(state.Event{Host: host, Kind: "host.provision_refused",
				Message: "not provisioned: the appliance is ephemeral (no data disk)"})
		}
		h.ProvisionTokenHash = hash
		if err := tx.PutHost(h); err != nil {
			return err
		}
		return tx.Append(state.Event{Host: host, Kind: "host.token", Message: "provisioning token issued"})
	})
	if err != nil {
		return "", err
	}
	if i.Ephemeral {
		return "", ErrEphemeral
	}
	return tok, nil
}
