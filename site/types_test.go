package site

import "testing"

func TestParseMAC(t *testing.T) {
	want := MAC{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}
	for _, in := range []string{"52:54:00:ab:cd:ef", "52:54:00:AB:CD:EF", "52-54-00-ab-cd-ef", "5254.00ab.cdef"} {
		if got, err := ParseMAC(in); err != nil || got != want || got.String() != "52:54:00:ab:cd:ef" {
			t.Errorf("ParseMAC(%q) = %v, %v, want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "52:54:00:ab:cd", "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01", "zz:54:00:ab:cd:ef"} {
		if got, err := ParseMAC(in); err == nil {
			t.Errorf("ParseMAC(%q) = %v, want an error", in, got)
		}
	}
}
