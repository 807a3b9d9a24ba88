// Package site is the model of a cairn site directory and its loader.
//
// A site directory holds site.toml (the site, its provisioning network and the defaults),
// hosts/*.toml (one machine per file) and roles/*.toml (the containers a host runs by taking on
// the role), plus any files the containers mount. Load reads it and returns either the whole,
// valid Site or every problem at once, each with file, line, column, key, what was expected and
// how to fix it. Schema describes the same files as JSON Schema for editors.
//
// The package reads the directory and does not fetch, apply or remember. The one edit it makes
// is RaiseProvision's, the in-place raise of a host's provision counter that asks for the host
// to be provisioned again: it is here because here is where TOML is understood.
package site
