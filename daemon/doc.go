// Package daemon will hold the converging daemon that runs on the appliance: it watches the site
// directory, plans and applies changes, keeps state, and runs the PXE services, the agent API, the
// status API and metrics. It reads the site only through package site.
package daemon
