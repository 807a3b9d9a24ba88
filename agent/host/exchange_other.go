//go:build !linux

package host

func exchange(a, b string) error { return errNoExchange }
