package vmtest

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
)

func pubPEMBytes(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
