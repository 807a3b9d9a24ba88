package dhcp

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/cairn-appliance/cairn/site"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mods   []dhcpv4.Modifier
		class  Class
		vendor string
	}{
		{"an installed OS", nil, NotNetboot, ""},
		{"BIOS PXE (arch 0)", optBIOS, BIOS, "PXEClient"},
		{"UEFI x64 PXE (arch 7)", optUEFI7, UEFI, "PXEClient"},
		{"UEFI PXE (arch 9)", optUEFI9, UEFI, "PXEClient"},
		{"UEFI HTTP boot (arch 16, HTTPClient)", optHTTP, UEFIHTTP, "HTTPClient"},
		{"iPXE (user class, as iPXE sends it)", optIPXE, IPXE, "PXEClient"},
		{"iPXE (user class in RFC 3004 form)", append([]dhcpv4.Modifier{dhcpv4.WithUserClass("iPXE", true)}, optUEFI7...), IPXE, "PXEClient"},
		{"iPXE without option 60", []dhcpv4.Modifier{dhcpv4.WithUserClass("iPXE", false)}, IPXE, "PXEClient"},
		{"another user class", append([]dhcpv4.Modifier{dhcpv4.WithUserClass("gPXE", false)}, optBIOS...), BIOS, "PXEClient"},
		{"arch from option 60 when option 93 is missing", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016"))}, UEFI, "PXEClient"},
		{"PXE without any arch: BIOS", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient"))}, BIOS, "PXEClient"},
		{"ARM64 UEFI PXE (arch 11)", optARM, Unsupported, "PXEClient"},
		{"32-bit UEFI HTTP (arch 15)", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("HTTPClient")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_HTTP))}, Unsupported, "HTTPClient"},
		{"HTTPClient with a PXE arch", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("HTTPClient")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64))}, Unsupported, "HTTPClient"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Classify(discover(t, unknownMAC(1), tc.mods...))
			if c.Class != tc.class || c.Vendor != tc.vendor {
				t.Errorf("Classify() = %v, vendor %q; want %v, vendor %q", c.Class, c.Vendor, tc.class, tc.vendor)
			}
		})
	}
}

func TestBootFile(t *testing.T) {
	b := Boot{HTTPBase: "http://:8080"}
	if err := b.check(); err != nil {
		t.Fatal(err)
	}
	mac := mustMAC("52:54:00:AB:CD:EF")
	for _, tc := range []struct {
		class Class
		file  string
	}{
		{BIOS, "undionly.kpxe"},
		{UEFI, "ipxe.efi"},
		{UEFIHTTP, "http://192.0.2.1:8080/boot/ipxe.efi"},
		{IPXE, "http://192.0.2.1:8080/boot/ipxe?mac=52:54:00:ab:cd:ef&platform=${platform}"},
		{NotNetboot, ""},
		{Unsupported, ""},
	} {
		file, next := b.File(tc.class, mac, applianceIP)
		if file != tc.file {
			t.Errorf("File(%v) = %q, want %q", tc.class, file, tc.file)
		}
		if tc.file != "" && next != applianceIP {
			t.Errorf("File(%v) next-server = %v, want the appliance %v", tc.class, next, applianceIP)
		}
	}
	// An explicit host and TFTP server are used as given.
	b = Boot{HTTPBase: "http://boot.lab.example:81/", TFTPServer: netip.MustParseAddr("192.0.2.5")}
	if file, next := b.File(IPXE, mac, applianceIP); file != "http://boot.lab.example:81/boot/ipxe?mac=52:54:00:ab:cd:ef&platform=${platform}" || next != netip.MustParseAddr("192.0.2.5") {
		t.Errorf("File(IPXE) = %q, %v", file, next)
	}
	for _, bad := range []Boot{
		{},
		{HTTPBase: "https://:8443"},
		{HTTPBase: "http://:8080/cairn"},
		{HTTPBase: "http://"},
		{HTTPBase: "http://:0"},
		{HTTPBase: "http://" + strings.Repeat("a", 100) + ":8080"},
		{HTTPBase: "http://:8080", TFTPServer: netip.MustParseAddr("2001:db8::1")},
	} {
		if err := bad.check(); err == nil {
			t.Errorf("Boot%+v.check() = nil, want an error", bad)
		}
	}
}

func TestBootScriptURLHook(t *testing.T) {
	b := Boot{HTTPBase: "http://:5000", ScriptURL: func(base string, mac site.MAC) string { return base + "/s/" + mac.String() }}
	if file, _ := b.File(IPXE, mustMAC("52:54:00:ab:cd:ef"), applianceIP); file != "http://192.0.2.1:5000/s/52:54:00:ab:cd:ef" {
		t.Errorf("File(IPXE) = %q, want the hook's URL", file)
	}
	b.ScriptURL = func(base string, _ site.MAC) string { return base + "/" + strings.Repeat("x", 120) }
	if err := b.check(); err == nil {
		t.Error("a script URL too long for the boot file field was accepted")
	}
}
