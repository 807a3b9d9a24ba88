package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cairn runs the command line in-process and returns its exit code and output.
func cairn(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		args []string
		want int
	}{
		{[]string{"version"}, exitOK},
		{[]string{"site", "validate", "../../examples/site"}, exitOK},
		{[]string{"site", "validate", "--format", "json", "../../examples/site"}, exitOK},
		{[]string{"site", "show", "../../examples/site"}, exitOK},
		{[]string{"site", "schema"}, exitOK},
		{[]string{"site", "schema", "--kind", "host"}, exitOK},
		{[]string{"site", "validate", "../../site/testdata/types"}, exitFailed},
		{[]string{"site", "validate", "--format", "github", "../../site/testdata/types"}, exitFailed},
		{[]string{"site", "validate", "/nonexistent/site"}, exitFailed},
		{[]string{"site", "show", "../../site/testdata/types"}, exitFailed},
		{[]string{"site", "validate"}, exitUsage},
		{[]string{"site", "validate", "a", "b"}, exitUsage},
		{[]string{"site", "validate", "--format", "xml", "../../examples/site"}, exitUsage},
		{[]string{"site", "validate", "--bogus", "../../examples/site"}, exitUsage},
		{[]string{"site", "schema", "--kind", "hosts"}, exitUsage},
		{[]string{"site", "nonsense"}, exitUsage},
		{[]string{"nonsense"}, exitUsage},
		{[]string{"version", "extra"}, exitUsage},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			if code, out, errOut := cairn(t, tt.args...); code != tt.want {
				t.Errorf("cairn %s = exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(tt.args, " "), code, tt.want, out, errOut)
			}
		})
	}
}

// TestValidateGolden checks that cairn site validate prints exactly the golden problems of
// every broken site under site/testdata, each line FILE:LINE:COL: MESSAGE with FILE under DIR.
func TestValidateGolden(t *testing.T) {
	goldens, _ := filepath.Glob("../../site/testdata/*.golden")
	if len(goldens) == 0 {
		t.Fatal("no golden files under site/testdata")
	}
	for _, golden := range goldens {
		dir := strings.TrimSuffix(golden, ".golden")
		t.Run(filepath.Base(dir), func(t *testing.T) {
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			code, out, errOut := cairn(t, "site", "validate", dir)
			if code != exitFailed {
				t.Fatalf("exit %d, want %d", code, exitFailed)
			}
			got := strings.ReplaceAll(out, dir+string(filepath.Separator), "")
			if got != string(want) {
				t.Errorf("output differs from %s\n--- got\n%s--- want\n%s", golden, got, want)
			}
			if !strings.Contains(errOut, "is invalid") {
				t.Errorf("stderr = %q, want a summary", errOut)
			}
		})
	}
}

func TestValidateJSON(t *testing.T) {
	code, out, _ := cairn(t, "site", "validate", "--format", "json", "../../site/testdata/duplicates")
	if code != exitFailed {
		t.Fatalf("exit %d, want %d", code, exitFailed)
	}
	var rep report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if rep.Valid || len(rep.Errors) == 0 {
		t.Fatalf("report = %+v, want invalid with errors", rep)
	}
	e := rep.Errors[0]
	if !strings.HasPrefix(e.File, "../../site/testdata/duplicates/hosts/") || e.Line < 1 || e.Column < 1 || e.Message == "" || e.Hint == "" {
		t.Errorf("first error = %+v, want file under the site dir, a position, a message and a hint", e)
	}

	code, out, _ = cairn(t, "site", "validate", "--format", "json", "../../examples/site")
	if code != exitOK {
		t.Fatalf("exit %d, want 0", code)
	}
	rep = report{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.Valid || rep.Site != "rack1" || rep.Hosts != 3 || rep.Roles != 2 || rep.Errors == nil {
		t.Errorf("report = %+v, want valid rack1 with 3 hosts and 2 roles and an empty error list", rep)
	}
}

func TestValidateGitHub(t *testing.T) {
	_, out, _ := cairn(t, "site", "validate", "--format", "github", "../../site/testdata/unknown-key")
	want := "::error file=../../site/testdata/unknown-key/hosts/a.toml,line=7,col=1,title=cairn site validate::colour: unknown key in host file;"
	if !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
}

func TestShow(t *testing.T) {
	_, out, _ := cairn(t, "site", "show", "../../examples/site")
	for _, want := range []string{"web-01", "52:54:00:20:00:11", "10.20.0.11", "httpd,metrics", "first-nonremovable"} {
		if !strings.Contains(out, want) {
			t.Errorf("site show output lacks %q:\n%s", want, out)
		}
	}
}

func TestVersion(t *testing.T) {
	_, out, _ := cairn(t, "version")
	if !strings.HasPrefix(out, "cairn "+version+" ") {
		t.Errorf("version output = %q", out)
	}
}
