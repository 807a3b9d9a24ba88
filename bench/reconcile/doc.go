// Package reconcile benchmarks the daemon's converging core on a 10,000-host site: cold load
// and plan, start to READY, edit-to-applied latency and peak RSS.
package reconcile
