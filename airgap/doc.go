// Package airgap will hold the content store: a distribution v3 storage tree addressed by sha256,
// the signed bundle index, verification, and the read-only registry handler that serves a store
// straight from the medium. It knows nothing of ISOs or hosts.
package airgap
