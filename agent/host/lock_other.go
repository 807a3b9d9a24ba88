//go:build !linux

package host

import "errors"

// Lock takes the agent's lock file; the host agent runs on Linux only.
func Lock(path string) (unlock func(), err error) {
	return nil, errors.New("the host agent runs on Linux only")
}
