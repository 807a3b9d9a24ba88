// Package agent will hold the code that runs on hosts: provisioning (disk selection, image
// streaming, configdrive) and container convergence through Podman Quadlet. It trusts nothing it
// has not verified and never imports registry or build code.
package agent
