package appliance

import "strings"

// The boot medium's layout: cairn build masters it (package build/iso) and the daemon reads
// it. These are its one home.
const (
	// MediumLabel is the medium's volume label unless the build names another.
	MediumLabel = "CAIRN"
	// MediumStoreDir is the airgap store's path on the medium, served in place by the daemon.
	MediumStoreDir = "cairn/store"
	// MediumSiteDir is the site seed's path on the medium, when the build ships one.
	MediumSiteDir = "cairn/site"
	// LabelArg names the kernel argument (cairn.label=LABEL) by which the medium's boot menu
	// tells the daemon the label it was given.
	LabelArg = "cairn.label"
)

// KernelArg returns the value of the last name=value on a kernel command line (the kernel
// passes every one on; the last one given wins, as for init's own arguments).
func KernelArg(cmdline, name string) (string, bool) {
	var (
		val   string
		found bool
	)
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			val, found = v, true
		}
	}
	return val, found
}
