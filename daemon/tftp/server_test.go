package tftp

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	packtftp "pack.ag/tftp"

	"github.com/cairn-appliance/cairn/airgap"
)

// The sizes of trixie's binaries (ipxe 1.21.1+git20250501), filled with random bytes: TFTP
// does not look inside, and the sizes give a last block of each kind (short, and for
// ipxe.efi at blksize 512, exactly 0 bytes: 996864 = 1947 × 512).
var binaries = map[string]int{"ipxe.efi": 996864, "undionly.kpxe": 108847, "snponly.efi": 284672}

// testStore writes a sealed store with airgap's writer: the three iPXE binaries as netboot
// artifacts of type ipxe, beside a kernel (netboot, not ipxe) and a plain file that the
// server must not serve. It returns the store and each binary's bytes.
func testStore(t testing.TB) (string, map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	dir, src := filepath.Join(t.TempDir(), "store"), t.TempDir()
	st, err := airgap.Create(ctx, airgap.StoreConfig{Dir: dir, Created: time.Unix(1700000000, 0)})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{'t', 'f', 't', 'p'})
	write := func(name string, size int) (string, []byte) {
		b := make([]byte, size)
		_, _ = rng.Read(b)
		p := filepath.Join(src, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p, b
	}
	want := map[string][]byte{}
	for name, size := range binaries {
		p, b := write(name, size)
		want[name] = b
		if err := st.AddNetboot(ctx, airgap.NetbootAsset{Name: name, Path: p, Type: airgap.NetbootIPXE}); err != nil {
			t.Fatal(err)
		}
	}
	kernel, _ := write("vmlinuz", 4096)
	if err := st.AddNetboot(ctx, airgap.NetbootAsset{Name: "vmlinuz", Path: kernel, Type: airgap.NetbootKernel}); err != nil {
		t.Fatal(err)
	}
	file, _ := write("notes.txt", 100)
	if err := st.AddFile(ctx, airgap.File{Name: "notes.txt", Path: file}); err != nil {
		t.Fatal(err)
	}
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Seal(ctx, key); err != nil {
		t.Fatal(err)
	}
	return dir, want
}

var (
	fixtureOnce  sync.Once
	fixtureDir   string
	fixtureFiles map[string][]byte
	fixtureTmp   string
)

// fixture is one store for the package's tests.
func fixture(t testing.TB) (*Store, map[string][]byte) {
	t.Helper()
	fixtureOnce.Do(func() {
		var err error
		if fixtureTmp, err = os.MkdirTemp("", "cairn-tftp-test-"); err != nil {
			t.Fatal(err)
		}
		ft := &tmpTB{TB: t, dir: fixtureTmp}
		fixtureDir, fixtureFiles = testStore(ft)
	})
	s, err := OpenStore(fixtureDir)
	if err != nil {
		t.Fatal(err)
	}
	return s, fixtureFiles
}

// tmpTB gives testStore a TempDir that outlives the first test.
type tmpTB struct {
	testing.TB
	dir string
	n   int
}

func (t *tmpTB) TempDir() string {
	t.n++
	d := filepath.Join(t.dir, strconv.Itoa(t.n))
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixtureTmp != "" {
		_ = os.RemoveAll(fixtureTmp)
	}
	os.Exit(code)
}

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs a server on a free loopback port until the test ends.
func start(t *testing.T, cfg Config) (netip.AddrPort, *logBuffer) {
	t.Helper()
	if cfg.Files == nil {
		cfg.Files, _ = fixture(t)
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	logs := &logBuffer{}
	cfg.Log = slog.New(slog.NewTextHandler(logs, nil))
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run after cancel = %v, want context.Canceled", err)
		}
	})
	return s.Addr(), logs
}

func sum(b []byte) string { h := sha256.Sum256(b); return fmt.Sprintf("%x", h) }

func checkSame(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if sum(got) != sum(want) {
		t.Errorf("%s: got %d bytes, sha256 %s; want %d bytes, sha256 %s", what, len(got), sum(got), len(want), sum(want))
	}
}

func TestStoreServesOnlyIPXEBinaries(t *testing.T) {
	s, want := fixture(t)
	if got := s.Names(); !slices.Equal(got, []string{"ipxe.efi", "snponly.efi", "undionly.kpxe"}) {
		t.Errorf("Names() = %v, want the three iPXE binaries only", got)
	}
	for _, name := range []string{"vmlinuz", "notes.txt", "netboot/ipxe.efi", "ipxe.efi:latest", "IPXE.EFI", ""} {
		if _, err := s.Open(name); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Open(%q) = %v, want not exist", name, err)
		}
	}
	f, err := s.Open("ipxe.efi")
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, f.Size())
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	checkSame(t, "Open(ipxe.efi)", b, want["ipxe.efi"])
}

func TestOpenStoreRefusesAlteredBlob(t *testing.T) {
	dir, want := testStore(t)
	d := sum(want["snponly.efi"])
	p := filepath.Join(dir, "docker", "registry", "v2", "blobs", "sha256", d[:2], d, "data")
	b := append([]byte(nil), want["snponly.efi"]...)
	b[100] ^= 1
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore(dir); err == nil || !strings.Contains(err.Error(), "snponly.efi") || !strings.Contains(err.Error(), "cairn bundle verify") {
		t.Errorf("OpenStore of an altered store = %v, want an error naming snponly.efi and cairn bundle verify", err)
	}
}

// TestCurl fetches with curl's tftp://, with its default options and with blksize 1468.
func TestCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed; run scripts/deps.sh")
	}
	addr, logs := start(t, Config{})
	_, want := fixture(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"default", nil},
		{"blksize 1468", []string{"--tftp-blksize", "1468"}},
		{"no options", []string{"--tftp-no-options"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "ipxe.efi")
			args := append([]string{"-sS", "--max-time", "60", "-o", out}, tc.args...)
			args = append(args, fmt.Sprintf("tftp://%s/ipxe.efi", addr))
			if b, err := exec.Command("curl", args...).CombinedOutput(); err != nil {
				t.Fatalf("curl %v: %v\n%s", args, err, b)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			checkSame(t, "curl "+tc.name, got, want["ipxe.efi"])
		})
	}
	if l := logs.String(); !strings.Contains(l, "blksize=1468") || !strings.Contains(l, "file=ipxe.efi bytes=996864") {
		t.Errorf("log lacks a transfer of ipxe.efi at blksize 1468:\n%s", l)
	}
}

// TestTFTPHPA fetches with tftp-hpa's client, which sends no options (RFC 1350 only), and
// asks it for ../etc/passwd.
func TestTFTPHPA(t *testing.T) {
	if _, err := exec.LookPath("tftp"); err != nil {
		t.Skip("tftp (tftp-hpa) is not installed; run scripts/deps.sh")
	}
	addr, _ := start(t, Config{})
	_, want := fixture(t)
	dir := t.TempDir()
	for name := range want {
		out := filepath.Join(dir, name)
		cmd := exec.Command("tftp", "-v", "-m", "binary", addr.Addr().String(), strconv.Itoa(int(addr.Port())), "-c", "get", name, out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", cmd.Args, err, b)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		checkSame(t, "tftp-hpa get "+name, got, want[name])
	}
	cmd := exec.Command("tftp", "-v", "-m", "binary", addr.Addr().String(), strconv.Itoa(int(addr.Port())), "-c", "get", "../etc/passwd", filepath.Join(dir, "passwd"))
	b, _ := cmd.CombinedOutput()
	if !strings.Contains(string(b), "Error code 2") {
		t.Errorf("%v said %q, want Error code 2 (access violation)", cmd.Args, b)
	}
}

// TestAtftp fetches with atftp, asking for windowsize 8 and blksize 1468 (RFC 7440).
func TestAtftp(t *testing.T) {
	if _, err := exec.LookPath("atftp"); err != nil {
		t.Skip("atftp is not installed; run scripts/deps.sh")
	}
	addr, logs := start(t, Config{})
	_, want := fixture(t)
	for _, opts := range [][]string{
		{"--option", "windowsize 8", "--option", "blksize 1468", "--option", "tsize 0"},
		{"--option", "windowsize 16"},
		{},
	} {
		t.Run(strings.Join(opts, " "), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "ipxe.efi")
			args := append(append([]string{"--verbose", "-g", "-r", "ipxe.efi", "-l", out}, opts...), addr.Addr().String(), strconv.Itoa(int(addr.Port())))
			cmd := exec.Command("atftp", args...)
			b, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %v\n%s", cmd.Args, err, b)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			checkSame(t, "atftp "+strings.Join(opts, " "), got, want["ipxe.efi"])
		})
	}
	if l := logs.String(); !strings.Contains(l, "blksize=1468 windowsize=8") {
		t.Errorf("log lacks a transfer at blksize 1468, windowsize 8:\n%s", l)
	}
}

// TestPackClient fetches with pack.ag/tftp's client, which negotiates windowsize too.
func TestPackClient(t *testing.T) {
	addr, logs := start(t, Config{})
	_, want := fixture(t)
	for _, tc := range []struct {
		name string
		opts []packtftp.ClientOpt
		log  string
	}{
		{"default", nil, "blksize=512 windowsize=1"},
		{"blksize 1468", []packtftp.ClientOpt{packtftp.ClientBlocksize(1468)}, "blksize=1468 windowsize=1"},
		{"windowsize 16", []packtftp.ClientOpt{packtftp.ClientWindowsize(16)}, "blksize=512 windowsize=16"},
		{"blksize 1468 windowsize 16", []packtftp.ClientOpt{packtftp.ClientBlocksize(1468), packtftp.ClientWindowsize(16)}, "blksize=1468 windowsize=16"},
		{"blksize 9000 windowsize 200", []packtftp.ClientOpt{packtftp.ClientBlocksize(9000), packtftp.ClientWindowsize(200)}, "blksize=1468 windowsize=64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := packtftp.NewClient(append([]packtftp.ClientOpt{packtftp.ClientTransferSize(true)}, tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			for name, w := range want {
				resp, err := c.Get(addr.String() + "/" + name)
				if err != nil {
					t.Fatalf("Get %s: %v", name, err)
				}
				if n, err := resp.Size(); err != nil || n != int64(len(w)) {
					t.Errorf("tsize of %s = %d, %v; want %d", name, n, err, len(w))
				}
				got, err := io.ReadAll(resp)
				if err != nil {
					t.Fatalf("reading %s: %v", name, err)
				}
				checkSame(t, "pack.ag/tftp "+tc.name+" "+name, got, w)
			}
			waitLog(t, logs, tc.log)
		})
	}
}

func waitLog(t *testing.T, logs *logBuffer, want string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if strings.Contains(logs.String(), want) {
			return
		}
	}
	t.Errorf("log lacks %q:\n%s", want, logs.String())
}

// rawClient speaks TFTP datagram by datagram, to check what real clients never send.
type rawClient struct {
	t      *testing.T
	conn   *net.UDPConn
	server *net.UDPAddr
	tid    *net.UDPAddr // the transfer's address, from its first packet
}

func newRaw(t *testing.T, server netip.AddrPort) *rawClient {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawClient{t: t, conn: c, server: net.UDPAddrFromAddrPort(server)}
}

func rq(op uint16, name, mode string, opts ...string) []byte {
	b := binary.BigEndian.AppendUint16(nil, op)
	for _, s := range append([]string{name, mode}, opts...) {
		b = append(append(b, s...), 0)
	}
	return b
}

func (c *rawClient) send(p []byte, to *net.UDPAddr) {
	c.t.Helper()
	if _, err := c.conn.WriteToUDP(p, to); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawClient) ack(block uint16) {
	c.send([]byte{0, opACK, byte(block >> 8), byte(block)}, c.tid)
}

// recv returns the next packet, or nil after d.
func (c *rawClient) recv(d time.Duration) []byte {
	c.t.Helper()
	buf := make([]byte, 70000)
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	n, from, err := c.conn.ReadFromUDP(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	if err != nil {
		c.t.Fatal(err)
	}
	if c.tid == nil {
		c.tid = from
	} else if from.String() != c.tid.String() {
		c.t.Fatalf("packet from %s, want the transfer's %s", from, c.tid)
	}
	return buf[:n]
}

func parseOACK(p []byte) map[string]string {
	fields := strings.Split(strings.TrimSuffix(string(p[2:]), "\x00"), "\x00")
	m := map[string]string{}
	for i := 0; i+1 < len(fields); i += 2 {
		m[fields[i]] = fields[i+1]
	}
	return m
}

// get runs a whole read with the given options as an RFC 7440 client would, acknowledging
// each window, and returns the file and the OACK (nil when none came).
func (c *rawClient) get(name string, opts ...string) ([]byte, map[string]string) {
	c.t.Helper()
	c.send(rq(opRRQ, name, "octet", opts...), c.server)
	p := c.recv(5 * time.Second)
	if p == nil {
		c.t.Fatal("no answer to the read request")
	}
	blksize, window := 512, 1
	var oack map[string]string
	switch binary.BigEndian.Uint16(p) {
	case opOACK:
		oack = parseOACK(p)
		if v, ok := oack["blksize"]; ok {
			blksize, _ = strconv.Atoi(v)
		}
		if v, ok := oack["windowsize"]; ok {
			window, _ = strconv.Atoi(v)
		}
		c.ack(0)
		p = nil
	case opDATA:
	default:
		c.t.Fatalf("answer %x, want OACK or DATA", p)
	}
	var data []byte
	last, inWindow := uint16(0), 0
	for {
		if p == nil {
			if p = c.recv(5 * time.Second); p == nil {
				c.t.Fatalf("no DATA after block %d", last)
			}
		}
		if binary.BigEndian.Uint16(p) != opDATA {
			c.t.Fatalf("packet %x, want DATA", p[:min(len(p), 16)])
		}
		blk := binary.BigEndian.Uint16(p[2:])
		switch {
		case blk == last+1:
			data = append(data, p[4:]...)
			last++
			inWindow++
			if len(p)-4 < blksize {
				c.ack(last)
				return data, oack
			}
			if inWindow == window {
				c.ack(last)
				inWindow = 0
			}
		case blk == last:
		default:
			c.t.Fatalf("block %d after %d on loopback", blk, last)
		}
		p = nil
	}
}

func TestOptions(t *testing.T) {
	addr, _ := start(t, Config{})
	_, want := fixture(t)
	size := strconv.Itoa(len(want["ipxe.efi"]))
	for _, tc := range []struct {
		name string
		opts []string
		oack map[string]string // nil: no OACK, DATA at 512
	}{
		{"none", nil, nil},
		{"tsize", []string{"tsize", "0"}, map[string]string{"tsize": size}},
		{"blksize 1468 (UEFI firmware)", []string{"blksize", "1468", "tsize", "0"}, map[string]string{"blksize": "1468", "tsize": size}},
		{"blksize 1432 (iPXE)", []string{"blksize", "1432"}, map[string]string{"blksize": "1432"}},
		{"blksize beyond the MTU is lowered", []string{"blksize", "65464"}, map[string]string{"blksize": "1468"}},
		{"blksize 8", []string{"blksize", "8"}, map[string]string{"blksize": "8"}}, // undionly.kpxe below: 13,606 blocks
		{"blksize under 8 is ignored", []string{"blksize", "0"}, nil},
		{"windowsize 0 is ignored", []string{"windowsize", "0"}, nil},
		{"windowsize and blksize at their largest are lowered", []string{"blksize", "65464", "windowsize", "65535"}, map[string]string{"blksize": "1468", "windowsize": "64"}},
		{"windowsize 4", []string{"windowsize", "4", "blksize", "1468"}, map[string]string{"windowsize": "4", "blksize": "1468"}},
		{"names are case-insensitive", []string{"BlkSize", "1024", "TSIZE", "0"}, map[string]string{"blksize": "1024", "tsize": size}},
		{"timeout", []string{"timeout", "3"}, map[string]string{"timeout": "3"}},
		{"timeout 0 is ignored", []string{"timeout", "0"}, nil},
		{"unknown and unparsable options are ignored", []string{"multicast", "", "blksize", "big", "rollover", "0"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "ipxe.efi"
			if tc.name == "blksize 8" {
				name = "undionly.kpxe"
				tc.oack["tsize"] = strconv.Itoa(len(want[name]))
				tc.opts = append(tc.opts, "tsize", "0")
			}
			got, oack := newRaw(t, addr).get(name, tc.opts...)
			if fmt.Sprint(oack) != fmt.Sprint(tc.oack) {
				t.Errorf("OACK %v, want %v", oack, tc.oack)
			}
			checkSame(t, name, got, want[name])
		})
	}
}

func TestRefused(t *testing.T) {
	addr, logs := start(t, Config{})
	for _, tc := range []struct {
		name string
		pkt  []byte
		code ErrorCode
	}{
		{"../etc/passwd", rq(opRRQ, "../etc/passwd", "octet"), ErrAccessViolation},
		{"/etc/passwd", rq(opRRQ, "/etc/passwd", "octet"), ErrAccessViolation},
		{"/ipxe.efi", rq(opRRQ, "/ipxe.efi", "octet"), ErrAccessViolation},
		{"a/../ipxe.efi", rq(opRRQ, "a/../ipxe.efi", "octet"), ErrAccessViolation},
		{"..", rq(opRRQ, "..", "octet"), ErrAccessViolation},
		{"backslash", rq(opRRQ, `..\ipxe.efi`, "octet"), ErrAccessViolation},
		{"control character", rq(opRRQ, "ipxe\x01.efi", "octet"), ErrAccessViolation},
		{"NUL inside the name", rq(opRRQ, "ipxe.efi\x00../../etc/passwd", "octet"), ErrIllegalOp},
		{"unknown name", rq(opRRQ, "pxelinux.0", "octet"), ErrFileNotFound},
		{"a kernel of the store", rq(opRRQ, "vmlinuz", "octet"), ErrFileNotFound},
		{"a plain file of the store", rq(opRRQ, "notes.txt", "octet"), ErrFileNotFound},
		{"a store path", rq(opRRQ, "docker/registry/v2/blobs", "octet"), ErrFileNotFound},
		{"another case", rq(opRRQ, "IPXE.EFI", "octet"), ErrFileNotFound},
		{"netascii", rq(opRRQ, "ipxe.efi", "netascii"), ErrIllegalOp},
		{"mail", rq(opRRQ, "ipxe.efi", "mail"), ErrIllegalOp},
		{"no mode", []byte("\x00\x01ipxe.efi\x00"), ErrIllegalOp},
		{"unterminated", []byte("\x00\x01ipxe.efi\x00octet"), ErrIllegalOp},
		{"empty name", rq(opRRQ, "", "octet"), ErrIllegalOp},
		{"write request", rq(opWRQ, "ipxe.efi", "octet", "tsize", "10"), ErrAccessViolation},
		{"write request of a new file", rq(opWRQ, "new.efi", "octet"), ErrAccessViolation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRaw(t, addr)
			c.send(tc.pkt, c.server)
			p := c.recv(5 * time.Second)
			if len(p) < 5 || binary.BigEndian.Uint16(p) != opERROR {
				t.Fatalf("answer %q, want an ERROR packet", p)
			}
			if code := ErrorCode(binary.BigEndian.Uint16(p[2:])); code != tc.code {
				t.Errorf("error code %d (%q), want %d", code, p[4:], tc.code)
			}
			if p[len(p)-1] != 0 {
				t.Errorf("error message %q is not NUL-terminated", p[4:])
			}
		})
	}
	waitLog(t, logs, `tftp request refused" client=127.0.0.1`)
	if l := logs.String(); !strings.Contains(l, `file=../etc/passwd`) || !strings.Contains(l, "tftp write request refused") {
		t.Errorf("log lacks the refusals of ../etc/passwd and of the write request:\n%s", l)
	}
}

// TestNoAnswerToStrayPackets: DATA, ACK and ERROR sent to the server's port belong to no
// transfer and get nothing back.
func TestNoAnswerToStrayPackets(t *testing.T) {
	addr, _ := start(t, Config{})
	c := newRaw(t, addr)
	for _, p := range [][]byte{{0, opDATA, 0, 1, 'x'}, {0, opACK, 0, 0}, errorPacket(0, "x"), {0, 9}, {0}} {
		c.send(p, c.server)
	}
	if p := c.recv(300 * time.Millisecond); p != nil {
		t.Errorf("answer %q to stray packets, want none", p)
	}
}

// TestRetransmit drops the first DATA block: the server sends it again after its timeout.
func TestRetransmit(t *testing.T) {
	addr, _ := start(t, Config{})
	_, want := fixture(t)
	c := newRaw(t, addr)
	c.send(rq(opRRQ, "undionly.kpxe", "octet", "timeout", "1", "blksize", "1468"), c.server)
	if p := c.recv(5 * time.Second); p == nil || binary.BigEndian.Uint16(p) != opOACK {
		t.Fatalf("answer %q, want OACK", p)
	}
	c.ack(0)
	first := c.recv(5 * time.Second)
	start := time.Now()
	again := c.recv(5 * time.Second) // not acknowledged: the same block again, after ~1 s
	if again == nil || !bytes.Equal(first, again) {
		t.Fatalf("after an unacknowledged block: %q, want the block again", again[:min(len(again), 4)])
	}
	if d := time.Since(start); d < 700*time.Millisecond {
		t.Errorf("block sent again after %s, want the 1 s timeout", d)
	}
	data := append([]byte(nil), again[4:]...)
	for blk := uint16(1); ; {
		c.ack(blk)
		p := c.recv(5 * time.Second)
		if p == nil {
			t.Fatalf("no block %d", blk+1)
		}
		blk++
		data = append(data, p[4:]...)
		if len(p)-4 < 1468 {
			c.ack(blk)
			break
		}
	}
	checkSame(t, "undionly.kpxe after a retransmission", data, want["undionly.kpxe"])
}

// TestWindowRestart: with windowsize 4, an ACK of the window's second block (the client lost
// the third) makes the server send the window again from the third (RFC 7440).
func TestWindowRestart(t *testing.T) {
	addr, _ := start(t, Config{})
	_, want := fixture(t)
	c := newRaw(t, addr)
	c.send(rq(opRRQ, "snponly.efi", "octet", "windowsize", "4"), c.server)
	if p := c.recv(5 * time.Second); p == nil || binary.BigEndian.Uint16(p) != opOACK {
		t.Fatalf("answer %q, want OACK", p)
	}
	c.ack(0)
	for i := uint16(1); i <= 4; i++ {
		if p := c.recv(5 * time.Second); p == nil || binary.BigEndian.Uint16(p[2:]) != i {
			t.Fatalf("window block %d: %x", i, p[:min(len(p), 4)])
		}
	}
	c.ack(2)
	for i := uint16(3); i <= 6; i++ {
		if p := c.recv(5 * time.Second); p == nil || binary.BigEndian.Uint16(p[2:]) != i {
			t.Fatalf("after ACK 2, want block %d, got %x", i, p[:min(len(p), 4)])
		}
	}
	c.ack(2) // a duplicate: ignored, nothing sent until the timeout
	if p := c.recv(300 * time.Millisecond); p != nil {
		t.Errorf("a duplicate ACK brought block %d, want nothing (Sorcerer's Apprentice)", binary.BigEndian.Uint16(p[2:]))
	}
	// Finish the file from block 7, as the client that got 3-6.
	c.ack(6)
	data := append([]byte(nil), want["snponly.efi"][:6*512]...)
	last, inWindow := uint16(6), 0
	for {
		p := c.recv(5 * time.Second)
		if p == nil {
			t.Fatalf("no block after %d", last)
		}
		if blk := binary.BigEndian.Uint16(p[2:]); blk != last+1 {
			continue
		}
		last++
		inWindow++
		data = append(data, p[4:]...)
		if len(p)-4 < 512 {
			c.ack(last)
			break
		}
		if inWindow == 4 {
			c.ack(last)
			inWindow = 0
		}
	}
	checkSame(t, "snponly.efi after a window restart", data, want["snponly.efi"])
}

// TestClientError: an ERROR from the client ends the transfer, which is logged as failed.
func TestClientError(t *testing.T) {
	addr, logs := start(t, Config{})
	c := newRaw(t, addr)
	c.send(rq(opRRQ, "ipxe.efi", "octet"), c.server)
	if p := c.recv(5 * time.Second); p == nil {
		t.Fatal("no DATA")
	}
	c.send(errorPacket(0, "disk full"), c.tid)
	waitLog(t, logs, `tftp transfer failed`)
	if l := logs.String(); !strings.Contains(l, "disk full") {
		t.Errorf("log lacks the client's error:\n%s", l)
	}
}

// TestConcurrent runs 50 transfers at once, half with windowsize.
func TestConcurrent(t *testing.T) {
	addr, _ := start(t, Config{})
	_, want := fixture(t)
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Go(func() {
			opts := []packtftp.ClientOpt{packtftp.ClientBlocksize(1468)}
			if i%2 == 0 {
				opts = append(opts, packtftp.ClientWindowsize(8))
			}
			c, err := packtftp.NewClient(opts...)
			if err != nil {
				errs <- err
				return
			}
			resp, err := c.Get(addr.String() + "/ipxe.efi")
			if err != nil {
				errs <- err
				return
			}
			got, err := io.ReadAll(resp)
			if err == nil && !bytes.Equal(got, want["ipxe.efi"]) {
				err = fmt.Errorf("client %d: %d bytes, not the file", i, len(got))
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestRunStopsTransfers: cancelling Run ends a transfer whose client went quiet, at once.
func TestRunStopsTransfers(t *testing.T) {
	files, _ := fixture(t)
	s, err := New(Config{Addr: "127.0.0.1:0", Files: files})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	c := newRaw(t, s.Addr())
	c.send(rq(opRRQ, "ipxe.efi", "octet", "timeout", "30"), c.server)
	if p := c.recv(5 * time.Second); p == nil {
		t.Fatal("no answer")
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Run took %s to stop", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop within 10 s of its context ending")
	}
}

func TestNewErrors(t *testing.T) {
	files, _ := fixture(t)
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Addr: "127.0.0.1:0"}, "no files"},
		{Config{Addr: "[::1]:0", Files: files}, "IPv4"},
		{Config{Addr: "127.0.0.1:0", Interface: "nosuchif0", Files: files}, `interface "nosuchif0"`},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error with %q", tc.cfg, err, tc.want)
		}
	}
	s, err := New(Config{Addr: "127.0.0.1:0", Files: files})
	if err != nil {
		t.Fatal(err)
	}
	defer s.conn.Close()
	if _, err := New(Config{Addr: s.Addr().String(), Files: files}); err == nil || !strings.Contains(err.Error(), "listening on") {
		t.Errorf("New on a taken port = %v, want a listening error", err)
	}
}

// TestInterface binds to lo (SO_BINDTODEVICE needs CAP_NET_RAW) and fetches through it; the
// largest blksize follows lo's MTU.
func TestInterface(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SO_BINDTODEVICE needs root")
	}
	addr, _ := start(t, Config{Interface: "lo"})
	_, want := fixture(t)
	got, oack := newRaw(t, addr).get("ipxe.efi", "blksize", "65464")
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if w := strconv.Itoa(min(lo.MTU-32, 65464)); oack["blksize"] != w {
		t.Errorf("blksize on lo = %s, want %s (lo's MTU %d less 32)", oack["blksize"], w, lo.MTU)
	}
	checkSame(t, "ipxe.efi through lo", got, want["ipxe.efi"])
}

func FuzzParseRequest(f *testing.F) {
	f.Add(rq(opRRQ, "ipxe.efi", "octet", "blksize", "1468", "tsize", "0"))
	f.Add(rq(opWRQ, "../x", "netascii"))
	f.Add([]byte{0, 1, 0, 0})
	f.Add([]byte{0, 1, 'a', 0, 'o', 0, 'b', 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRequest(b)
		if err != nil {
			return
		}
		p := negotiate(r.opts, 1<<20, EthernetBlockSize)
		if p.blockSize < minBlockSize || p.blockSize > EthernetBlockSize || p.windowSize < 1 || p.windowSize > MaxWindowSize || p.timeout < time.Second {
			t.Errorf("negotiate(%q) = %+v: out of bounds", r.opts, p)
		}
		checkName(r.name)
	})
}
