// Package api will hold the wire types of the agent API, shared by cairn-agent and the daemon.
// It stays small and free of dependencies.
package api
