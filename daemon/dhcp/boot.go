package dhcp

import (
	"bytes"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/cairn-appliance/cairn/site"
)

// What clients boot, by class. The TFTP names are files of Debian's ipxe package that the
// TFTP service serves; the HTTP paths are served by package daemon/boot under Boot.HTTPBase.
const (
	// FileBIOS is what firmware PXE on a BIOS machine loads by TFTP: iPXE using the card's
	// own UNDI driver, which works on any PXE card.
	FileBIOS = "undionly.kpxe"
	// FileUEFI is what firmware PXE on an x86-64 UEFI machine loads by TFTP, and UEFI HTTP
	// boot loads from PathBinaries+FileUEFI: iPXE with its own drivers (Debian links it to
	// ipxe-amd64.efi).
	FileUEFI = "ipxe.efi"
	// PathBinaries is the HTTP path under which daemon/boot serves the iPXE binaries.
	PathBinaries = "/boot/"
	// PathScript is the HTTP path of the iPXE script daemon/boot writes for a machine: the
	// machine's MAC is its query parameter mac, in canonical form, and iPXE fills in its
	// platform (pcbios or efi): /boot/ipxe?mac=52:54:00:12:34:56&platform=${platform}.
	PathScript = "/boot/ipxe"
)

// Class is the kind of network boot a client asks for, read from DHCP options 60 (vendor
// class), 77 (user class) and 93 (client architecture).
type Class int

// The classes of clients.
const (
	// NotNetboot is an ordinary DHCP client (an installed OS): it gets an address in full
	// mode, and nothing in proxy mode.
	NotNetboot Class = iota
	// BIOS is firmware PXE on a BIOS machine (option 60 PXEClient, arch 0): FileBIOS by TFTP.
	BIOS
	// UEFI is firmware PXE on an x86-64 UEFI machine (PXEClient, arch 7 or 9): FileUEFI by TFTP.
	UEFI
	// UEFIHTTP is UEFI HTTP boot on x86-64 (option 60 HTTPClient, arch 16): FileUEFI by HTTP.
	UEFIHTTP
	// IPXE is iPXE itself (option 77 "iPXE"), whatever loaded it: the URL of its script. This
	// is the rule that breaks the loop of iPXE loading iPXE.
	IPXE
	// Unsupported is a network boot client of an architecture cairn carries no iPXE for
	// (32-bit or ARM UEFI, ...): it gets no boot file.
	Unsupported
)

var classNames = [...]string{"not-netboot", "bios-pxe", "uefi-pxe", "uefi-http", "ipxe", "unsupported"}

// String names the class as the log does: "bios-pxe", "uefi-pxe", "uefi-http", "ipxe", ...
func (c Class) String() string {
	if c < 0 || int(c) >= len(classNames) {
		return "class(" + strconv.Itoa(int(c)) + ")"
	}
	return classNames[c]
}

// Client is what a request says about the machine that sent it.
type Client struct {
	Class Class
	// Arch is the architecture of option 93 (or of option 60's "Arch:" field); valid only
	// for network boot clients.
	Arch iana.Arch
	// Vendor is "PXEClient" or "HTTPClient" for network boot clients: the answer echoes it
	// in option 60, without which firmware ignores the boot options.
	Vendor string
}

// Classify reads the client's class from a request.
func Classify(m *dhcpv4.DHCPv4) Client {
	vendor := m.ClassIdentifier()
	var c Client
	switch {
	case strings.HasPrefix(vendor, "PXEClient"):
		c.Vendor = "PXEClient"
	case strings.HasPrefix(vendor, "HTTPClient"):
		c.Vendor = "HTTPClient"
	}
	if isIPXE(m.Options.Get(dhcpv4.OptionUserClassInformation)) {
		if c.Vendor == "" {
			c.Vendor = "PXEClient"
		}
		c.Class, c.Arch = IPXE, arch(m, vendor)
		return c
	}
	if c.Vendor == "" {
		return c
	}
	c.Arch = arch(m, vendor)
	switch {
	case c.Vendor == "HTTPClient" && c.Arch == iana.EFI_X86_64_HTTP:
		c.Class = UEFIHTTP
	case c.Vendor == "PXEClient" && c.Arch == iana.INTEL_X86PC:
		c.Class = BIOS
	case c.Vendor == "PXEClient" && (c.Arch == iana.EFI_X86_64 || c.Arch == iana.EFI_BC):
		c.Class = UEFI
	default:
		c.Class = Unsupported
	}
	return c
}

// isIPXE reports whether a user class option (77) says "iPXE": iPXE sends the bare string,
// RFC 3004 clients a list of length-prefixed strings.
func isIPXE(uc []byte) bool {
	if string(uc) == "iPXE" {
		return true
	}
	for len(uc) > 0 {
		n := int(uc[0])
		if n == 0 || 1+n > len(uc) {
			return false
		}
		if bytes.Equal(uc[1:1+n], []byte("iPXE")) {
			return true
		}
		uc = uc[1+n:]
	}
	return false
}

// arch is the first architecture of option 93, or else the one option 60 names
// ("PXEClient:Arch:00007:UNDI:003016"); BIOS when neither says.
func arch(m *dhcpv4.DHCPv4, vendor string) iana.Arch {
	if v := m.Options.Get(dhcpv4.OptionClientSystemArchitectureType); len(v) >= 2 {
		return iana.Arch(uint16(v[0])<<8 | uint16(v[1]))
	}
	fields := strings.Split(vendor, ":")
	for i := 0; i+1 < len(fields); i++ {
		if fields[i] == "Arch" {
			if n, err := strconv.ParseUint(fields[i+1], 10, 16); err == nil {
				return iana.Arch(n) //nolint:gosec // ParseUint(…, 16) keeps it in range
			}
		}
	}
	return iana.INTEL_X86PC
}

// Boot says where network boot clients fetch what they boot.
type Boot struct {
	// TFTPServer is where firmware PXE clients load iPXE by TFTP: the next-server (siaddr)
	// of the answers. Zero means the site's appliance_ip.
	TFTPServer netip.Addr
	// HTTPBase is the boot HTTP server (package daemon/boot) as "http://HOST:PORT", with no
	// path: UEFI HTTP boot gets HTTPBase+"/boot/ipxe.efi", iPXE gets its ScriptURL. Its host
	// may be left out ("http://:8080") to mean the
	// site's appliance_ip, which then follows the site. Required.
	HTTPBase string
	// ScriptURL makes the URL of a machine's iPXE script from the boot server's URL and the
	// machine's MAC: package daemon/boot's ScriptURL, so that the two never disagree. Nil
	// means base+"/boot/ipxe?mac=MAC&platform=${platform}", the same.
	ScriptURL func(base string, mac site.MAC) string
}

// script is the URL of mac's iPXE script under base.
func (b Boot) script(base string, mac site.MAC) string {
	if b.ScriptURL != nil {
		return b.ScriptURL(base, mac)
	}
	return base + PathScript + "?mac=" + mac.String() + "&platform=${platform}"
}

// maxURL is the longest URL that fits the 128-byte file field with its terminating NUL.
const maxURL = 127

// check validates the boot settings.
func (b Boot) check() error {
	if b.TFTPServer.IsValid() && !b.TFTPServer.Is4() {
		return fmt.Errorf("dhcp: Boot.TFTPServer %s is not an IPv4 address", b.TFTPServer)
	}
	if b.HTTPBase == "" {
		return fmt.Errorf(`dhcp: Boot.HTTPBase is empty; give the boot HTTP server as "http://HOST:PORT" (or "http://:PORT" for the site's appliance_ip)`)
	}
	u, err := url.Parse(b.HTTPBase)
	if err != nil {
		return fmt.Errorf("dhcp: Boot.HTTPBase %q: %w", b.HTTPBase, err)
	}
	if u.Scheme != "http" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf(`dhcp: Boot.HTTPBase %q: want "http://HOST:PORT" with no path, query or user (iPXE fetches its script over plain HTTP)`, b.HTTPBase)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return fmt.Errorf("dhcp: Boot.HTTPBase %q: %q is not a port", b.HTTPBase, p)
		}
	}
	// The longest URL handed out, with the longest appliance address, must fit the file field.
	long := b.script(b.base(netip.MustParseAddr("255.255.255.255")), site.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	if len(long) > maxURL {
		return fmt.Errorf("dhcp: Boot.HTTPBase %q is too long: the script URL would not fit the %d bytes of a DHCP boot file name", b.HTTPBase, maxURL)
	}
	return nil
}

// base is HTTPBase with the appliance's address filled in when its host is left out.
func (b Boot) base(appliance netip.Addr) string {
	s := strings.TrimSuffix(b.HTTPBase, "/")
	if rest, ok := strings.CutPrefix(s, "http://:"); ok {
		return "http://" + appliance.String() + ":" + rest
	}
	return s
}

// File is the boot file name or URL for a client of class c with the given MAC, and the
// next-server that goes with it; "" for a class that boots nothing.
func (b Boot) File(c Class, mac site.MAC, appliance netip.Addr) (file string, next netip.Addr) {
	next = b.TFTPServer
	if !next.IsValid() {
		next = appliance
	}
	switch c {
	case BIOS:
		return FileBIOS, next
	case UEFI:
		return FileUEFI, next
	case UEFIHTTP:
		return b.base(appliance) + PathBinaries + FileUEFI, next
	case IPXE:
		return b.script(b.base(appliance), mac), next
	}
	return "", netip.Addr{}
}
