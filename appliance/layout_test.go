package appliance

import "testing"

func TestKernelArg(t *testing.T) {
	for _, tc := range []struct {
		cmdline, want string
		ok            bool
	}{
		{"boot=live cairn.label=X1 quiet\n", "X1", true},
		{"cairn.label=A cairn.label=B", "B", true},
		{"cairn.label=", "", true},
		{"cairn.labels=no", "", false},
		{"", "", false},
	} {
		got, ok := KernelArg(tc.cmdline, LabelArg)
		if got != tc.want || ok != tc.ok {
			t.Errorf("KernelArg(%q) = %q, %v, want %q, %v", tc.cmdline, got, ok, tc.want, tc.ok)
		}
	}
}
