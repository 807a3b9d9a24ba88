// Package airgap is cairn's content store: the one place every artifact an offline site needs
// lives, from the build machine to the appliance's medium.
//
// A store is a directory in distribution v3's storage layout (docker/registry/v2/blobs and
// repositories), written with distribution's own storage code, so that the registry reads
// exactly what the build wrote. Container images and multi-platform indexes keep their
// upstream names (docker.io/library/nginx:1.27); OS disk images, netboot assets and plain
// files are OCI artifacts with cairn's artifact types under os/, netboot/ and files/. Every
// blob is addressed by its sha256 and stored once however many artifacts share it.
//
// Create starts a store and Store.Seal finishes it: bundle.json lists every artifact in
// canonical JSON and bundle.sig holds its ed25519 signature. The same inputs and creation
// time give the same bytes in every file, in whatever order the artifacts were added. A
// store whose writing failed has no bundle.json; remove the directory and write it again.
//
// Verify checks a sealed store against a public key: the signature, every tag and link a
// registry needs, and the hash of every blob, reporting every problem at once.
//
// NewRegistry serves a store as an OCI distribution registry (distribution's handler, in
// process) straight from a read-only medium, with no copy, optionally with an upper store on
// local disk layered beside it. To the network the registry is read-only: it answers GET and
// HEAD and refuses every push, mount and delete with 405 UNSUPPORTED, with or without an
// upper store. Only cairn writes the upper store, and nothing in it can shadow a tag of the
// medium: reads look in the medium first, and a tag the medium holds is read from it alone.
// Blob GETs answer Range requests.
//
// The package does not fetch anything from the network, master ISOs, or know about hosts;
// the build package fills stores and the daemon serves them. It does not configure logging:
// distribution logs through logrus's standard logger, which the command decides about.
package airgap
