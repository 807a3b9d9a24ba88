// Package registry benchmarks cairn's embedded registry (airgap.NewRegistry serving a store in
// place) against its anchor, Debian's docker-registry (distribution 2.8) serving a copy of the
// same tree, and measures time-to-first-pull against copying the store before serving it.
// It holds only benchmarks; run them with make bench.
package registry
