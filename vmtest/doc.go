// Package vmtest will hold the QEMU harness and the end-to-end scenarios. Its tests are opt-in
// and are never needed by go test -short.
package vmtest
