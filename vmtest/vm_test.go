package vmtest

import (
	"fmt"
	"strings"
	"testing"
)

// TestArgs checks QEMU's command line without running QEMU, so it runs in every go test.
func TestArgs(t *testing.T) {
	for _, tc := range []struct {
		fw          Firmware
		media       Media
		want, never []string
	}{
		{BIOS, CDROM, []string{"ide-cd,drive=boot,bootindex=0", "media=cdrom,readonly=on"}, []string{"pflash", "usb-storage"}},
		{UEFI, USB, []string{"if=pflash,format=raw,unit=0,readonly=on,file=" + ovmfCode, "usb-storage,bus=xhci.0,drive=boot,bootindex=0", "snapshot=on"}, []string{"ide-cd"}},
	} {
		vm := &VM{opts: Options{ISO: "/x/cairn.iso", Firmware: tc.fw, Media: tc.media, MemoryMiB: 1024, CPUs: 2, Forward: []int{5000, 22}}, dir: "/d", ports: map[int]int{5000: 40000, 22: 40001}}
		args := strings.Join(vm.Args("tcg"), " ")
		for _, w := range append(tc.want, "-accel tcg", "restrict=on", "hostfwd=tcp:127.0.0.1:40000-:5000", "hostfwd=tcp:127.0.0.1:40001-:22", "path=/d/serial.log") {
			if !strings.Contains(args, w) {
				t.Errorf("%s/%s: QEMU args lack %q:\n%s", tc.fw, tc.media, w, args)
			}
		}
		for _, n := range tc.never {
			if strings.Contains(args, n) {
				t.Errorf("%s/%s: QEMU args have %q:\n%s", tc.fw, tc.media, n, args)
			}
		}
		if strings.Contains(args, "hostfwd=tcp::") || strings.Contains(args, "hostfwd=tcp:0.0.0.0") {
			t.Errorf("a port is forwarded on every address, not only 127.0.0.1:\n%s", args)
		}
	}
}

func TestSkipMessageSaysHowToRun(t *testing.T) {
	if Enabled() {
		t.Skip("VM tests are on")
	}
	ft := &fakeTB{TB: t}
	func() {
		defer func() { _ = recover() }()
		SkipUnlessEnabled(ft)
	}()
	if !strings.Contains(ft.msg, "make vmtest") || !strings.Contains(ft.msg, "CAIRN_VMTEST=1") {
		t.Errorf("skip message = %q, want it to say make vmtest and CAIRN_VMTEST=1", ft.msg)
	}
}

type fakeTB struct {
	testing.TB
	msg string
}

func (f *fakeTB) Helper() {}

// Skip records the message and stops the caller, as testing's Skip does with runtime.Goexit.
func (f *fakeTB) Skip(args ...any) {
	f.msg = fmt.Sprint(args...)
	panic("skipped")
}

// TestArgsCPUs: one vCPU under TCG unless asked otherwise, two under KVM.
func TestArgsCPUs(t *testing.T) {
	for _, tc := range []struct {
		cpus  int
		accel string
		want  string
	}{{0, "tcg", "-smp 1 "}, {0, "kvm", "-smp 2 "}, {4, "tcg", "-smp 4 "}} {
		vm := &VM{opts: Options{ISO: "/x/cairn.iso", MemoryMiB: 1024, CPUs: tc.cpus}, dir: "/d", ports: map[int]int{}}
		if args := strings.Join(vm.Args(tc.accel), " ") + " "; !strings.Contains(args, tc.want) {
			t.Errorf("CPUs %d under %s: QEMU args lack %q:\n%s", tc.cpus, tc.accel, tc.want, args)
		}
	}
}
