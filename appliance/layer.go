package appliance

import (
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// BinaryPath is where cairn.service expects the cairn executable on the appliance.
const BinaryPath = "usr/local/bin/cairn"

// WriteCairnLayer makes dir a layer for build/iso holding exe as the appliance's cairn
// (dir/usr/local/bin/cairn, mode 0755). exe must be an x86-64 Linux executable; build it with
// CGO_ENABLED=0, or on a system whose C library is no newer than Debian trixie's.
func WriteCairnLayer(dir, exe string) error {
	f, err := elf.Open(exe)
	if err != nil {
		return fmt.Errorf("cairn executable %s: %w; give a Linux build of cairn", exe, err)
	}
	machine, typ := f.Machine, f.Type
	_ = f.Close()
	if machine != elf.EM_X86_64 || (typ != elf.ET_EXEC && typ != elf.ET_DYN) {
		return fmt.Errorf("cairn executable %s: %s %s, expected an x86-64 executable (GOOS=linux GOARCH=amd64)", exe, machine, typ)
	}
	dst := filepath.Join(dir, filepath.FromSlash(BinaryPath))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil { //nolint:gosec // G301: the layer is the appliance's /usr/local/bin
		return fmt.Errorf("writing the cairn layer: %w", err)
	}
	in, err := os.Open(exe)
	if err != nil {
		return fmt.Errorf("writing the cairn layer: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755) //nolint:gosec // G302: an executable
	if err != nil {
		return fmt.Errorf("writing the cairn layer: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return fmt.Errorf("writing the cairn layer: %w", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("writing the cairn layer: %w", err)
	}
	// umask may have narrowed the mode OpenFile asked for.
	return os.Chmod(dst, 0o755) //nolint:gosec // G302: an executable
}
