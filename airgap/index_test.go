package airgap

import (
	"bytes"
	"testing"
)

func TestCanonicalJSON(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{`{"b": 1, "a": [true, null, "x"]}`, `{"a":[true,null,"x"],"b":1}`},
		{`{"z":{"y":"<&>","x":-2}}`, `{"z":{"x":-2,"y":"<&>"}}`},
		{` "é\u2028" `, `"é\u2028"`},
	} {
		got, err := canonicalJSON([]byte(tc.in))
		if err != nil || string(got) != tc.want {
			t.Errorf("canonicalJSON(%s) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{`{"a":1.5}`, `{"a":1} {}`, `{`, `1e3`} {
		if got, err := canonicalJSON([]byte(bad)); err == nil {
			t.Errorf("canonicalJSON(%s) = %s, want an error", bad, got)
		}
	}
}

// FuzzParseIndex feeds bundle.json's parser arbitrary bytes: it must not panic, and whatever
// canonicalizes must canonicalize to itself.
func FuzzParseIndex(f *testing.F) {
	f.Add([]byte(`{"artifacts":[],"created":"2026-11-01T00:00:00Z","totals":{"artifacts":0,"blobs":0,"bytes":0,"storedBytes":0},"version":1}`))
	f.Add([]byte(`{"artifacts":[{"digest":"sha256:` + string(bytes.Repeat([]byte("a"), 64)) + `","kind":"os","mediaType":"x","name":"d","repository":"os/d","size":1,"tag":"1"}],"version":1}`))
	f.Add([]byte(`{"version":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseIndex(b)
		c, err := canonicalJSON(b)
		if err != nil {
			return
		}
		again, err := canonicalJSON(c)
		if err != nil || !bytes.Equal(c, again) {
			t.Fatalf("canonicalJSON is not idempotent on %q: %q then %q (%v)", b, c, again, err)
		}
	})
}
