package host

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"

	"github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/agent/configdrive"
)

// ConfigDriveLabels are where the configdrive partition appears, by its FAT label (cloud-init
// accepts either case).
var ConfigDriveLabels = []string{"/dev/disk/by-label/cidata", "/dev/disk/by-label/CIDATA"}

// ReadConfigDrive reads the host agent's file (api.AgentFile) from the configdrive partition
// at dev, a FAT file system read in place: nothing is mounted.
func ReadConfigDrive(dev string) (api.HostAgent, error) {
	f, err := os.Open(dev)
	if err != nil {
		return api.HostAgent{}, err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return api.HostAgent{}, fmt.Errorf("reading %s: %w", dev, err)
	}
	_, files, err := configdrive.Read(f, 0, size)
	if err != nil {
		return api.HostAgent{}, fmt.Errorf("reading %s: %w", dev, err)
	}
	b, ok := files[api.AgentFile]
	if !ok {
		return api.HostAgent{}, fmt.Errorf("the configdrive %s holds no %s: was the host provisioned by cairn?", dev, api.AgentFile)
	}
	return parseHostAgent(b, dev+":"+api.AgentFile)
}

// FindConfigDrive reads the host agent's file from the first of ConfigDriveLabels there is.
func FindConfigDrive() (api.HostAgent, error) {
	for _, dev := range ConfigDriveLabels {
		if _, err := os.Stat(dev); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		return ReadConfigDrive(dev)
	}
	return api.HostAgent{}, fmt.Errorf("no configdrive partition (%s): give the agent's file with --config", ConfigDriveLabels[0])
}

// ReadAgentFile reads the host agent's file from a plain JSON file.
func ReadAgentFile(path string) (api.HostAgent, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return api.HostAgent{}, err
	}
	return parseHostAgent(b, path)
}

func parseHostAgent(b []byte, where string) (api.HostAgent, error) {
	var ha api.HostAgent
	if err := json.Unmarshal(b, &ha); err != nil {
		return ha, fmt.Errorf("reading %s: %w", where, err)
	}
	u, err := url.Parse(ha.Server)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return ha, fmt.Errorf("%s: server %q: want the appliance's URL, http://HOST:PORT", where, ha.Server)
	case ha.Host == "":
		return ha, fmt.Errorf("%s: no host name", where)
	case ha.Token == "":
		return ha, fmt.Errorf("%s: no host token", where)
	}
	return ha, nil
}
