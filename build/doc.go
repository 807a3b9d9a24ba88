// Package build turns a build.toml into a signed, de-duplicated content store: it reads and
// checks build.toml (every problem at once, positioned), resolves each image and source and
// pins them in build.lock, plans sizes and checks free space before fetching a blob, fetches
// through a content-addressed cache (registry blobs through go-containerregistry, other files
// through go-getter, resuming interrupted downloads), and writes the store with package airgap.
// On the way it converts qcow2 OS images to raw+zstd (once: the cache keeps the result), and,
// for an [agent] table, makes the netboot agent's kernel, initramfs and binary artifacts from
// Debian's kernel package with package agent/initramfs.
//
// It runs where the network is, never on the appliance. ISO mastering lives in build/iso.
package build
