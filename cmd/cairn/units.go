package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/cairn-appliance/cairn/agent/quadlet"
	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/daemon/desired"
	"github.com/cairn-appliance/cairn/site"
)

func newSiteUnitsCmd() *cobra.Command {
	var bundle, registry, out string
	cmd := &cobra.Command{
		Use:   "units DIR HOST",
		Short: "Print the Quadlet units, registries.conf and config files a host of the site gets",
		Long: `Renders what the host agent of HOST writes for the site in DIR, byte for byte: a Quadlet
.container unit per container (under /etc/containers/systemd/cairn), the registries.conf drop-in
that sends every image to the appliance's registry, and the config files the containers mount.
No appliance is needed: review the output in a pull request.

Hosts pull images by digest. --bundle names the store (a directory with bundle.json, such as
cairn build's output) or its bundle.json: the site's tags resolve there as on the appliance.
Without it, only images the site pins by digest (name@sha256:...) resolve.

--out DIR writes the files into DIR as they lie on the host (DIR/etc/..., DIR/var/...), so
that two versions can be compared with diff -r.`,
		Example: `  cairn site units --bundle out/store examples/site web-01
  cairn site units --bundle out/store --out /tmp/web-01 examples/site web-01`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return fmt.Errorf("%s takes two arguments, the site directory and the host (got %d)", cmd.CommandPath(), len(args))
			}
			return nil
		},
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			s, err := site.Load(args[0])
			if err != nil {
				return fmt.Errorf("loading site %s:\n%w\nrun 'cairn site validate %s' for details", args[0], err, args[0])
			}
			resolve, err := imageResolver(bundle)
			if err != nil {
				return &failure{code: exitUsage, err: fmt.Errorf("--bundle: %w", err)}
			}
			if registry == "" {
				registry = net.JoinHostPort(s.Network.ApplianceIP.String(), "5000")
			}
			d, err := desired.ForHost(s, args[1], resolve, registry)
			if err != nil {
				var problems site.Errors
				if errors.As(err, &problems) {
					inDir := make(site.Errors, len(problems))
					for i, p := range problems {
						q := *p
						q.File = filepath.Join(args[0], filepath.FromSlash(p.File))
						inDir[i] = &q
					}
					return fmt.Errorf("resolving the site's images:\n%w", inDir)
				}
				return err
			}
			r, err := quadlet.Render(d, quadlet.DefaultLayout())
			if err != nil {
				return err
			}
			if out != "" {
				return writeUnits(out, r)
			}
			return printUnits(cmd.OutOrStdout(), r)
		}),
	}
	cmd.Flags().StringVar(&bundle, "bundle", "", "the store (directory) or bundle.json the site's image tags resolve in")
	cmd.Flags().StringVar(&registry, "registry", "", "the appliance's registry as hosts reach it (default: network.appliance_ip, port 5000)")
	cmd.Flags().StringVar(&out, "out", "", "write the files under this directory instead of printing them")
	return cmd
}

// imageResolver resolves images in the store of bundle (a directory or its bundle.json), or,
// without one, only images pinned by digest.
func imageResolver(bundle string) (func(site.Image) (string, error), error) {
	if bundle == "" {
		return func(img site.Image) (string, error) {
			if img.Digest != "" {
				return img.Digest, nil
			}
			return "", fmt.Errorf("image %s is not pinned by digest; give --bundle (the store cairn build wrote) to resolve its tag", img)
		}, nil
	}
	dir := bundle
	if fi, err := os.Stat(bundle); err != nil {
		return nil, err
	} else if !fi.IsDir() {
		dir = filepath.Dir(bundle)
	}
	if _, _, err := airgap.ReadIndex(dir); err != nil {
		return nil, err
	}
	stores := airgap.NewStores(dir)
	return func(img site.Image) (string, error) {
		a, err := stores.ResolveImage(img.Name, img.Tag, digest.Digest(img.Digest))
		return a.Digest.String(), err
	}, nil
}

func printUnits(w io.Writer, r *quadlet.Rendered) error {
	l := quadlet.DefaultLayout()
	for _, u := range r.Units {
		fmt.Fprintf(w, "# %s\n%s\n", filepath.Join(l.UnitDir, u.Name), u.Data)
	}
	fmt.Fprintf(w, "# %s\n%s", quadlet.RegistriesConfPath, r.RegistriesConf)
	for _, c := range r.Configs {
		fmt.Fprintf(w, "\n# %s (%s bytes, sha256 %s)\n", c.Path, strconv.Itoa(len(c.Data)), digest.FromBytes(c.Data).Encoded())
	}
	return nil
}

func writeUnits(out string, r *quadlet.Rendered) error {
	l := quadlet.DefaultLayout()
	files := map[string][]byte{filepath.Join(out, quadlet.RegistriesConfPath): r.RegistriesConf}
	for _, u := range r.Units {
		files[filepath.Join(out, l.UnitDir, u.Name)] = u.Data
	}
	for _, c := range r.Configs {
		files[filepath.Join(out, c.Path)] = c.Data
	}
	for p, b := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
