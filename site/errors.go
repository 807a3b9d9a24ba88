package site

import (
	"errors"

	"github.com/cairn-appliance/cairn/site/tomlpos"
)

// ErrNoSite is returned (wrapped) when the directory given to Load does not exist or is not a
// directory.
var ErrNoSite = errors.New("site: not a site directory")

// Error is one problem found in a site directory, with its file (relative to the site
// directory), line, column, key, message and hint.
type Error = tomlpos.Error

// Errors is every problem Load found, sorted by file, line and column.
type Errors = tomlpos.Errors
