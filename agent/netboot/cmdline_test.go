package netboot

import (
	"errors"
	"strings"
	"testing"
)

const token = "q0aG2yE1n3Q8cQ0mZ-v7WgkJ3kX9_uJtqfLJr5cVf1s"

func TestParseCmdline(t *testing.T) {
	for _, tc := range []struct {
		name, cmdline string
		want          Args
	}{
		{"discover, as the script writes it",
			"BOOT_IMAGE=linux initrd=initrd cairn.server=http://10.20.0.1:5000 cairn.mode=discover cairn.mac=52:54:00:99:00:01 console=ttyS0,115200n8 console=tty0",
			Args{Server: "http://10.20.0.1:5000", Mode: "discover", MAC: "52:54:00:99:00:01"}},
		{"provision with its token",
			"initrd=initrd cairn.server=http://10.20.0.1:5000 cairn.mode=provision cairn.token=" + token + " cairn.mac=52:54:00:20:00:11 console=ttyS0,115200n8",
			Args{Server: "http://10.20.0.1:5000", Mode: "provision", Token: token, MAC: "52:54:00:20:00:11"}},
		{"the MAC in another form, the URL with a slash, https",
			"cairn.server=https://appliance.example:5443/ cairn.mode=discover cairn.mac=52-54-00-AB-CD-EF",
			Args{Server: "https://appliance.example:5443", Mode: "discover", MAC: "52:54:00:ab:cd:ef"}},
		{"a token in discover mode is not sent",
			"cairn.server=http://10.20.0.1:5000 cairn.mode=discover cairn.token=" + token + " cairn.mac=52:54:00:99:00:01",
			Args{Server: "http://10.20.0.1:5000", Mode: "discover", MAC: "52:54:00:99:00:01"}},
		{"the last of a repeated argument counts",
			"cairn.mode=provision cairn.server=http://10.20.0.1:5000 cairn.mode=discover cairn.mac=52:54:00:99:00:01\n",
			Args{Server: "http://10.20.0.1:5000", Mode: "discover", MAC: "52:54:00:99:00:01"}},
	} {
		got, err := ParseCmdline(tc.cmdline)
		if err != nil || got != tc.want {
			t.Errorf("%s: ParseCmdline(%q) = %+v, %v; want %+v", tc.name, tc.cmdline, got, err, tc.want)
		}
	}
}

func TestParseCmdlineErrors(t *testing.T) {
	const srv, mac = "cairn.server=http://10.20.0.1:5000 ", " cairn.mac=52:54:00:99:00:01"
	for _, tc := range []struct {
		cmdline string
		want    []string
	}{
		{srv + "cairn.mode=provision" + mac, []string{"cairn.mode=provision needs cairn.token=TOKEN"}},
		{srv + "cairn.mode=provision cairn.token=a$b" + mac, []string{"cairn.token: expected URL-safe base64"}},
		{srv + "cairn.mode=install" + mac, []string{`cairn.mode="install": expected provision or discover`}},
		{srv + "cairn.mode=discover", []string{`cairn.mac="": expected a MAC`}},
		{srv + "cairn.mode=discover cairn.mac=01:00:5e:00:00:01", []string{"not a network card's address"}},
		{srv + "cairn.mode=discover cairn.mac=00:00:00:00:00:00", []string{"not a network card's address"}},
		{"cairn.mode=discover" + mac, []string{`cairn.server="": missing`}},
		{"cairn.server=ftp://10.20.0.1 cairn.mode=discover" + mac, []string{"expected http://APPLIANCE:PORT"}},
		{"cairn.server=http://10.20.0.1:5000/boot cairn.mode=discover" + mac, []string{"expected http://APPLIANCE:PORT"}},
		// Every problem at once.
		{"cairn.server=x cairn.mode=y cairn.mac=z", []string{"cairn.server", "cairn.mode", "cairn.mac"}},
	} {
		_, err := ParseCmdline(tc.cmdline)
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("ParseCmdline(%q) = %v, want an error with %q", tc.cmdline, err, w)
			}
		}
	}
	if _, err := ParseCmdline("BOOT_IMAGE=/vmlinuz root=/dev/sda1 quiet"); !errors.Is(err, ErrNotNetboot) {
		t.Errorf("a command line without the agent's arguments: %v, want ErrNotNetboot", err)
	}
}

func FuzzParseCmdline(f *testing.F) {
	f.Add("initrd=initrd cairn.server=http://10.20.0.1:5000 cairn.mode=discover cairn.mac=52:54:00:99:00:01 console=ttyS0")
	f.Add("cairn.server=http://[::1]:5000 cairn.mode=provision cairn.token=" + token + " cairn.mac=52:54:00:20:00:11")
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseCmdline(s)
		if err != nil {
			return
		}
		// What is accepted is one plain word each, as the API paths and headers need.
		for _, v := range []string{a.Server, a.Mode, a.Token, a.MAC} {
			if strings.ContainsAny(v, " \t\r\n") {
				t.Fatalf("ParseCmdline(%q) accepted %q", s, v)
			}
		}
		if a.Mode == "provision" && a.Token == "" {
			t.Fatalf("ParseCmdline(%q): provision without a token", s)
		}
	})
}
