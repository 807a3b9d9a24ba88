package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/build"
)

func newBundleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Make signing keys for, inspect, verify and serve a content store",
		Long: `A bundle is the content store cairn build writes onto the medium: every container image,
OS image, netboot asset and file, in distribution's storage layout, with bundle.json listing
them and bundle.sig signing bundle.json.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newBundleKeygenCmd(), newBundleInspectCmd(), newBundleVerifyCmd(), newBundleServeCmd())
	return cmd
}

// oneStore accepts exactly one argument, the store directory.
func oneStore(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("%s takes one argument, the store directory (got %d)", cmd.CommandPath(), len(args))
	}
	return nil
}

func newBundleKeygenCmd() *cobra.Command {
	out := "cairn-bundle"
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Write a new ed25519 key pair for signing bundles",
		Long: `Writes PREFIX.key (the private key, mode 0600, for cairn build) and PREFIX.pub (the public
key, for cairn bundle verify and the appliance). Both are PEM; existing files are never replaced.`,
		Example: `  cairn bundle keygen --out /secure/site-a`,
		Args:    cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return &failure{code: exitUsage, err: errors.New("--out: give a path prefix for the key files")}
			}
			priv, pub, err := airgap.GenerateKey()
			if err != nil {
				return err
			}
			keyPath, pubPath := out+".key", out+".pub"
			if err := writeNew(keyPath, priv, 0o600); err != nil {
				return err
			}
			if err := writeNew(pubPath, pub, 0o644); err != nil {
				_ = os.Remove(keyPath)
				return err
			}
			k, err := airgap.ParsePublicKey(pub)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (private, keep it with the build) and %s (public), key %s\n", keyPath, pubPath, airgap.KeyID(k))
			return nil
		}),
	}
	cmd.Flags().StringVar(&out, "out", out, "path prefix of the key files")
	return cmd
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s already exists; choose another --out or remove it first", path)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

func newBundleInspectCmd() *cobra.Command {
	format := "text"
	cmd := &cobra.Command{
		Use:   "inspect DIR",
		Short: "List a store's artifacts, their sizes and what de-duplication saved",
		Long: `Reads DIR/bundle.json and prints one line per artifact. It does not check the signature or
the blobs; cairn bundle verify does.`,
		Example: `  cairn bundle inspect /run/cairn/medium
  cairn bundle inspect --format json ./out/store | jq '.artifacts[] | select(.kind == "os")'`,
		Args: oneStore,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if format != "text" && format != "json" {
				return &failure{code: exitUsage, err: fmt.Errorf("--format %q: expected text or json", format)}
			}
			ix, raw, err := airgap.ReadIndex(args[0])
			if err != nil {
				return err
			}
			if format == "json" {
				var v any
				if err := json.Unmarshal(raw, &v); err != nil {
					return err
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			}
			printIndex(cmd.OutOrStdout(), args[0], ix)
			return nil
		}),
	}
	cmd.Flags().StringVar(&format, "format", format, "output format: text or json (bundle.json, indented)")
	return cmd
}

func printIndex(w io.Writer, dir string, ix *airgap.Index) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tREPOSITORY\tTAG\tSIZE\tDETAIL\tDIGEST")
	for _, a := range ix.Artifacts {
		detail := strings.Join(a.Platforms, ",")
		if a.OS != nil {
			detail = fmt.Sprintf("%s, %s uncompressed", a.OS.Format, build.FormatBytes(a.OS.UncompressedSize))
		}
		if detail == "" {
			detail = "-"
		}
		tag := a.Tag
		if tag == "" {
			tag = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.Kind, a.Repository, tag, build.FormatBytes(a.Size), detail, shortDigest(a.Digest.String()))
	}
	_ = tw.Flush()
	t := ix.Totals
	saved := t.Bytes - t.StoredBytes
	pct := 0.0
	if t.Bytes > 0 {
		pct = 100 * float64(saved) / float64(t.Bytes)
	}
	fmt.Fprintf(w, "\n%d artifacts, %d blobs; %s referenced, %s stored; de-duplication saved %s (%.1f%%). Created %s.\n",
		t.Artifacts, t.Blobs, build.FormatBytes(t.Bytes), build.FormatBytes(t.StoredBytes), build.FormatBytes(saved), pct, ix.Created)
	fmt.Fprintf(w, "Not verified here: cairn bundle verify %s --key KEY.pub checks the signature and every blob.\n", dir)
}

func shortDigest(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}

func newBundleVerifyCmd() *cobra.Command {
	var keyPath string
	format := "text"
	cmd := &cobra.Command{
		Use:   "verify DIR --key FILE",
		Short: "Check a store's signature and re-hash every blob",
		Long: `Checks that bundle.sig is the signature of bundle.json by the public key FILE, that every
artifact's tag, manifests, configs and layers are present and linked as a registry needs them,
that bundle.json's record of each artifact matches its manifests, and re-hashes every blob in
parallel. Every problem is reported, one per line, naming the artifact and digest.

Exit status: 0 when the store is intact, 1 when it is not, 2 when the command line is wrong.

Formats: text (default), json (one object: intact, key, counts, bytes, seconds, MB/s, and
problems with artifact, repository, digest and message).`,
		Example: `  cairn bundle verify /run/cairn/medium --key site-a.pub
  cairn bundle verify --format json ./out/store --key site-a.pub | jq -r '.problems[].message'`,
		Args: oneStore,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if format != "text" && format != "json" {
				return &failure{code: exitUsage, err: fmt.Errorf("--format %q: expected text or json", format)}
			}
			pub, err := airgap.LoadPublicKey(keyPath)
			if err != nil {
				return &failure{code: exitUsage, err: fmt.Errorf("--key: %w", err)}
			}
			rep, err := airgap.Verify(cmd.Context(), args[0], pub)
			var verr *airgap.VerifyError
			if err != nil && !errors.As(err, &verr) {
				return err
			}
			if format == "json" {
				if err := writeVerifyJSON(cmd.OutOrStdout(), pub, rep, verr); err != nil {
					return err
				}
			} else if verr != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), verr.Error())
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: intact, signed by key %s; %d artifacts, %d blobs, %s re-hashed in %s (%.0f MB/s)\n",
					args[0], rep.KeyID, len(rep.Index.Artifacts), rep.Blobs, build.FormatBytes(rep.Bytes), rep.Duration.Round(time.Millisecond), rate(rep))
			}
			if verr != nil {
				return &failure{code: exitFailed, err: errSilent}
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&keyPath, "key", "", "public key file (PREFIX.pub from cairn bundle keygen)")
	cmd.Flags().StringVar(&format, "format", format, "output format: text or json")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

// rate is the verification's read rate in MB/s.
func rate(rep *airgap.Report) float64 {
	if rep == nil || rep.Duration <= 0 {
		return 0
	}
	return float64(rep.Bytes) / 1e6 / rep.Duration.Seconds()
}

type verifyJSON struct {
	Intact    bool          `json:"intact"`
	Key       string        `json:"key"`
	Artifacts int           `json:"artifacts"`
	Blobs     int           `json:"blobs"`
	Bytes     int64         `json:"bytes"`
	Seconds   float64       `json:"seconds"`
	MBps      float64       `json:"mbPerSecond"`
	Problems  []problemJSON `json:"problems"`
}

type problemJSON struct {
	Artifact   string `json:"artifact"`
	Repository string `json:"repository,omitempty"`
	Digest     string `json:"digest,omitempty"`
	Message    string `json:"message"`
}

func writeVerifyJSON(w io.Writer, pub ed25519.PublicKey, rep *airgap.Report, verr *airgap.VerifyError) error {
	out := verifyJSON{Intact: verr == nil, Key: airgap.KeyID(pub), Problems: []problemJSON{}}
	if rep != nil {
		out.Blobs, out.Bytes, out.Seconds, out.MBps = rep.Blobs, rep.Bytes, rep.Duration.Seconds(), rate(rep)
		if rep.Index != nil {
			out.Artifacts = len(rep.Index.Artifacts)
		}
	}
	if verr != nil {
		for _, p := range verr.Problems {
			out.Problems = append(out.Problems, problemJSON{Artifact: p.Artifact, Repository: p.Repository, Digest: p.Digest.String(), Message: p.Message})
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func newBundleServeCmd() *cobra.Command {
	var (
		listen  = "127.0.0.1:5000"
		upper   string
		verbose bool
	)
	cmd := &cobra.Command{
		Use:   "serve DIR",
		Short: "Serve a store as a read-only container registry (the /v2/ API)",
		Long: `Serves the store in DIR in place, with no copy, as an OCI distribution registry: pulls work,
every write (push, delete, upload) is refused with 405 UNSUPPORTED. With --upper, a second
store in that directory (one cairn writes, such as the appliance's /var/lib/cairn/store) is
read after DIR; a tag DIR holds is always served from DIR. Stops on SIGINT or SIGTERM.`,
		Example: `  cairn bundle serve /run/cairn/medium --listen 0.0.0.0:5000
  skopeo inspect --tls-verify=false docker://127.0.0.1:5000/docker.io/library/nginx:1.27`,
		Args: oneStore,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if _, _, err := net.SplitHostPort(listen); err != nil {
				return &failure{code: exitUsage, err: fmt.Errorf("--listen %q: expected HOST:PORT: %w", listen, err)}
			}
			// distribution logs through logrus; requests are logged only when asked for.
			logrus.SetOutput(cmd.ErrOrStderr())
			if verbose {
				logrus.SetLevel(logrus.InfoLevel)
			} else {
				logrus.SetLevel(logrus.WarnLevel)
			}
			h, err := airgap.NewRegistry(airgap.RegistryConfig{Dir: args[0], UpperDir: upper})
			if err != nil {
				return err
			}
			return serveUntilDone(cmd.Context(), cmd.OutOrStdout(), listen, h, args[0])
		}),
	}
	cmd.Flags().StringVar(&listen, "listen", listen, "address to listen on, HOST:PORT")
	cmd.Flags().StringVar(&upper, "upper", "", "a second store, read after DIR (never shadowing DIR's tags)")
	cmd.Flags().BoolVar(&verbose, "verbose", false, "log every request to stderr")
	return cmd
}

func serveUntilDone(ctx context.Context, out io.Writer, listen string, h http.Handler, dir string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", listen, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	fmt.Fprintf(out, "serving %s on http://%s/v2/\n", dir, ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return fmt.Errorf("stopping: %w", err)
	}
	return nil
}
