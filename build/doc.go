// Package build will turn a build.toml into a signed, de-duplicated content store and a bootable
// hybrid ISO: the lock file, fetching and pulling into the store, ISO mastering and progress.
// Nothing in it runs on the appliance at runtime.
package build
