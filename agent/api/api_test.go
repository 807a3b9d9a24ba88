package api

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestPath(t *testing.T) {
	if got, want := Path("52:54:00:12:34:56", CallPlan), "/agent/v1/machines/52:54:00:12:34:56/plan"; got != want {
		t.Errorf("Path = %q, want %q", got, want)
	}
}

// TestConfigDriveNames pins the file names of a NoCloud seed in the JSON.
func TestConfigDriveNames(t *testing.T) {
	b, err := json.Marshal(ConfigDrive{UserData: "u", MetaData: "m", NetworkConfig: "n"})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"user-data"`, `"meta-data"`, `"network-config"`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("%s lacks %s", b, k)
		}
	}
}
