package boot

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/airgap/airgaptest"
	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/daemon/token"
)

var update = flag.Bool("update", false, "rewrite the golden scripts under testdata/")

const (
	macPending     = "52:54:00:20:00:11"
	macProvisioned = "52:54:00:20:00:21"
	macReady       = "52:54:00:20:00:22"
	macFailed      = "52:54:00:20:00:31"
	macDiscovered  = "52:54:00:20:00:41"
	macUnknown     = "52:54:00:99:00:01"
	macGaveUp      = "52:54:00:20:00:32"
	macFailedLater = "52:54:00:20:00:33"
)

var kernel = bytes.Repeat([]byte("0123456789"), 1000)

// content writes a store with the agent's kernel and initramfs and an iPXE binary.
func content(t testing.TB) *airgap.Stores {
	t.Helper()
	dir := t.TempDir()
	airgaptest.FileStore(t, dir, []airgaptest.Netboot{
		{Name: DefaultKernel, Type: airgap.NetbootKernel, Content: kernel},
		{Name: DefaultInitramfs, Type: airgap.NetbootInitramfs, Content: []byte("initramfs")},
		{Name: "ipxe.efi", Type: airgap.NetbootIPXE, Content: []byte("MZ ipxe")},
	}, nil)
	return airgap.NewStores(dir)
}

func seed(t testing.TB) state.Store {
	t.Helper()
	st := state.NewMemory(0)
	err := st.Update(context.Background(), func(tx state.Tx) error {
		for _, h := range []state.Host{
			{Name: "web-01", MAC: macPending, Phase: state.Pending},
			{Name: "db-01", MAC: macProvisioned, Phase: state.Provisioned},
			{Name: "db-02", MAC: macReady, Phase: state.Ready},
			{Name: "app-01", MAC: macFailed, Phase: state.Failed, Failures: 1, Reason: "no disk matches first-nonremovable; $(reboot) # || &&"},
			{Name: "app-02", MAC: macGaveUp, Phase: state.Failed, Failures: state.MaxAttempts, Reason: "writing: $(reboot) # || &&"},
			{Name: "app-03", MAC: macFailedLater, Phase: state.Failed, Reason: "its containers were rolled back"},
			{Name: "discovered-525400200041", MAC: macDiscovered, Phase: state.Discovered},
		} {
			if err := tx.PutHost(h); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func handler(t testing.TB, st state.Store, ephemeral bool) http.Handler {
	t.Helper()
	h, err := New(Config{Store: st, Tokens: &token.Issuer{Store: st, Ephemeral: ephemeral}, Content: content(t), Server: "http://10.20.0.1:5000"})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func get(h http.Handler, target string, header http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

var tokenArg = regexp.MustCompile(`cairn\.token=(\S+)`)

// TestScripts renders the script of each kind of machine and compares it with its golden
// file (go test ./daemon/boot -update rewrites them).
func TestScripts(t *testing.T) {
	st := seed(t)
	h := handler(t, st, false)
	for _, c := range []struct{ golden, query string }{
		{"unknown", "mac=" + macUnknown + "&platform=efi"},
		{"unknown-dashes", "mac=52-54-00-99-00-01&platform=pcbios"},
		{"discovered", "mac=" + macDiscovered + "&platform=efi"},
		{"pending-pcbios", "mac=" + macPending + "&platform=pcbios"},
		{"pending-efi", "mac=" + strings.ToUpper(macPending) + "&platform=efi"},
		{"provisioned-pcbios", "mac=" + macProvisioned + "&platform=pcbios"},
		{"provisioned-efi", "mac=" + macProvisioned + "&platform=efi"},
		{"ready-efi", "mac=" + macReady + "&platform=efi"},
		{"failed-pcbios", "mac=" + macFailed + "&platform=pcbios"},
		{"gave-up-efi", "mac=" + macGaveUp + "&platform=efi"},
		{"failed-later-pcbios", "mac=" + macFailedLater + "&platform=pcbios"},
		{"ask-platform", "mac=" + macPending},
		{"ask-mac", ""},
	} {
		t.Run(c.golden, func(t *testing.T) {
			rec := get(h, "/boot/ipxe?"+c.query, nil)
			if rec.Code != http.StatusOK {
				t.Fatalf("GET /boot/ipxe?%s = %d %s", c.query, rec.Code, rec.Body)
			}
			body := rec.Body.String()
			if m := tokenArg.FindStringSubmatch(body); m != nil {
				// The token is new each time: check it is the one the state keeps the hash of.
				var hash string
				mac, _, _ := strings.Cut(strings.TrimPrefix(c.query, "mac="), "&")
				_ = st.View(context.Background(), func(tx state.Tx) error {
					hs, _ := state.HostsByMAC(tx, strings.ToLower(mac))
					hash = hs[0].ProvisionTokenHash
					return nil
				})
				if !token.Matches(hash, m[1]) {
					t.Errorf("the script's token %q is not the one the state keeps", m[1])
				}
				body = strings.Replace(body, m[1], "TOKEN", 1)
			}
			checkScript(t, body)
			golden(t, c.golden, body)
		})
	}
}

// TestEphemeralRefuses is the refusal: an ephemeral appliance boots no installer and says why.
func TestEphemeralRefuses(t *testing.T) {
	st := seed(t)
	rec := get(handler(t, st, true), "/boot/ipxe?mac="+macPending+"&platform=efi", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET = %d %s", rec.Code, rec.Body)
	}
	body := rec.Body.String()
	if strings.Contains(body, "cairn.token") || strings.Contains(body, "kernel ") {
		t.Error("an ephemeral appliance's script boots the agent")
	}
	checkScript(t, body)
	golden(t, "pending-ephemeral", body)
	// A machine the site does not name is still discovered: that writes no disk.
	if rec := get(handler(t, st, true), "/boot/ipxe?mac="+macUnknown+"&platform=efi", nil); !strings.Contains(rec.Body.String(), "cairn.mode=discover") {
		t.Errorf("an ephemeral appliance does not discover: %s", rec.Body)
	}
}

// TestEachBootIsANewAttempt renders a pending host's script twice: two tokens, the second kept.
func TestEachBootIsANewAttempt(t *testing.T) {
	st := seed(t)
	h := handler(t, st, false)
	var toks []string
	for range 2 {
		m := tokenArg.FindStringSubmatch(get(h, "/boot/ipxe?mac="+macPending+"&platform=efi", nil).Body.String())
		if m == nil {
			t.Fatal("no token in a pending host's script")
		}
		toks = append(toks, m[1])
	}
	var hash string
	_ = st.View(context.Background(), func(tx state.Tx) error {
		hs, _ := state.HostsByMAC(tx, macPending)
		hash = hs[0].ProvisionTokenHash
		return nil
	})
	if toks[0] == toks[1] || token.Matches(hash, toks[0]) || !token.Matches(hash, toks[1]) {
		t.Errorf("tokens %q then %q: want two, the state keeping the second", toks[0], toks[1])
	}
}

func TestBadRequests(t *testing.T) {
	h := handler(t, seed(t), false)
	for _, q := range []string{
		"mac=nonsense&platform=efi",
		"mac=&platform=efi",
		"mac=00:00:00:00:00:00&platform=efi", // null
		"mac=01:00:5e:00:00:01&platform=efi", // multicast
		"mac=00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01&platform=efi", // InfiniBand
		"mac=" + macPending + "&platform=arm64",
		"mac=" + url.QueryEscape(macPending+" ${foo}") + "&platform=efi",
	} {
		if rec := get(h, "/boot/ipxe?"+q, nil); rec.Code != http.StatusBadRequest {
			t.Errorf("GET /boot/ipxe?%s = %d, want 400", q, rec.Code)
		}
	}
	// A Host header that is no address makes no script either (no Server configured).
	st := seed(t)
	h2, err := New(Config{Store: st, Tokens: &token.Issuer{Store: st}, Content: content(t)})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/boot/ipxe?mac="+macUnknown+"&platform=efi", nil)
	req.Host = "evil host${x}"
	rec := httptest.NewRecorder()
	h2.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest {
		t.Errorf("a bad Host header got %d, want 400", rec.Code)
	}
	req.Host = "10.20.0.1:5000"
	rec = httptest.NewRecorder()
	h2.ServeHTTP(rec, req)
	if !strings.Contains(rec.Body.String(), "cairn.server=http://10.20.0.1:5000 ") {
		t.Errorf("the script does not name the address the machine reached:\n%s", rec.Body)
	}
}

func TestWordRefusesWhatIsNotAWord(t *testing.T) {
	for _, s := range []string{"", "a b", "${x}", "#c", "a\nb", "a;b c", "&&", "x||y", `a"b`, `a\b`, "a'b"} {
		if _, err := word(s); err == nil {
			t.Errorf("word(%q) accepted it", s)
		}
	}
	for _, s := range []string{"http://10.0.0.1:5000/boot/netboot/vmlinuz", "console=ttyS0,115200n8", "52:54:00:20:00:11", "AbC_-9"} {
		if got, err := word(s); err != nil || got != s {
			t.Errorf("word(%q) = %q, %v", s, got, err)
		}
	}
}

// TestTemplatesPrintOnlyWords checks that every action of the templates that prints a value
// prints it through w.
func TestTemplatesPrintOnlyWords(t *testing.T) {
	files, _ := filepath.Glob("templates/*.ipxe")
	action := regexp.MustCompile(`{{-?\s*(.*?)\s*-?}}`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range action.FindAllStringSubmatch(string(b), -1) {
			a := m[1]
			ok := false
			for _, p := range []string{"w ", "template ", "define ", "end", "if ", "else", "range ", "with ", "/*"} {
				ok = ok || strings.HasPrefix(a, p)
			}
			if !ok {
				t.Errorf("%s: {{%s}} prints a value without w", f, a)
			}
		}
	}
}

// checkScript checks what iPXE would trip over: a first line other than #!ipxe, a goto with
// no label, and a command that can fail with nothing after it to catch the failure (a
// script ends at its first unhandled failure).
func checkScript(t *testing.T, s string) {
	t.Helper()
	if !strings.HasPrefix(s, "#!ipxe\n") {
		t.Errorf("the script does not start with #!ipxe:\n%s", s)
	}
	labels := map[string]bool{}
	for _, l := range strings.Split(s, "\n") {
		if name, ok := strings.CutPrefix(l, ":"); ok {
			labels[name] = true
		}
	}
	for _, m := range regexp.MustCompile(`goto (\S+)`).FindAllStringSubmatch(s, -1) {
		if !labels[m[1]] {
			t.Errorf("goto %s: no such label", m[1])
		}
	}
	for _, l := range strings.Split(s, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "kernel", "initrd", "chain", "sanboot", "boot", "iseq", "reboot":
			if !strings.HasSuffix(l, "||") {
				t.Errorf("%q: a failure here ends the script", l)
			}
		}
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".ipxe")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./daemon/boot -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the script made (go test ./daemon/boot -update rewrites it):\n%s", path, got)
	}
}

// TestNetbootRange fetches part of the kernel as an agent resuming a download would.
func TestNetbootRange(t *testing.T) {
	srv := httptest.NewServer(handler(t, seed(t), false))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/boot/netboot/"+DefaultKernel, nil)
	req.Header.Set("Range", "bytes=1234-5677")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, kernel[1234:5678]) {
		t.Fatalf("Range GET = %d with %d bytes, want 206 with bytes 1234-5677", resp.StatusCode, len(body))
	}
	if cr := resp.Header.Get("Content-Range"); cr != "bytes 1234-5677/10000" {
		t.Errorf("Content-Range = %q", cr)
	}
	etag := resp.Header.Get("ETag")
	// If-Range with the ETag resumes; a stale one gets the whole file.
	for _, c := range []struct {
		ifRange string
		code    int
		n       int
	}{{etag, http.StatusPartialContent, 4444}, {`"sha256:stale"`, http.StatusOK, len(kernel)}} {
		req.Header.Set("If-Range", c.ifRange)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || len(body) != c.n {
			t.Errorf("If-Range %s: %d with %d bytes, want %d with %d", c.ifRange, resp.StatusCode, len(body), c.code, c.n)
		}
	}
	for target, code := range map[string]int{
		"/boot/netboot/" + DefaultInitramfs: http.StatusOK,
		"/boot/netboot/missing":             http.StatusNotFound,
		"/boot/ipxe.efi":                    http.StatusOK,
		"/boot/" + DefaultKernel:            http.StatusNotFound, // only iPXE binaries at /boot/
		"/boot/netboot/..%2fbundle.json":    http.StatusNotFound,
	} {
		resp, err := http.Get(srv.URL + target)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != code {
			t.Errorf("GET %s = %d, want %d", target, resp.StatusCode, code)
		}
	}
}

// FuzzScriptMAC throws any mac parameter at the script handler: it answers 200 or 400, and a
// script names the MAC only in its canonical form.
func FuzzScriptMAC(f *testing.F) {
	for _, s := range []string{macPending, "52-54-00-20-00-11", "5254.0020.0011", "", "zz", "01:00:5e:00:00:01", "52:54:00:20:00:11 ${x}", "52:54:00:20:00:11%00"} {
		f.Add(s)
	}
	st := seed(f)
	h := handler(f, st, false)
	f.Fuzz(func(t *testing.T, mac string) {
		m, err := parseMAC(mac)
		rec := get(h, "/boot/ipxe?platform=efi&mac="+url.QueryEscape(mac), nil)
		switch {
		case err != nil && rec.Code != http.StatusBadRequest:
			t.Fatalf("mac %q: %v, yet %d", mac, err, rec.Code)
		case err == nil && rec.Code != http.StatusOK:
			t.Fatalf("mac %q = %s, yet %d %s", mac, m, rec.Code, rec.Body)
		case err == nil && !strings.Contains(rec.Body.String(), "script of "+m.String()+" "):
			t.Fatalf("mac %q: the script does not name %s:\n%s", mac, m, rec.Body)
		}
	})
}
