// Package build benchmarks cairn build against skopeo pulling the same images from Debian's
// docker-registry on loopback: time, bytes on disk, and a warm rebuild.
package build
