package build

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/distribution/reference"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cairn-appliance/cairn/agent/initramfs"
	"github.com/cairn-appliance/cairn/site/tomlpos"
)

// Config is a build.toml: everything one appliance carries. Struct tags drive the loader (see
// tomlpos.Decoder) and docs/build.md.
type Config struct {
	// Path is the build.toml the config was read from; relative paths in it are relative to its
	// directory.
	Path string `toml:"-"`

	Appliance  Appliance   `toml:"appliance" doc:"Where the appliance OS comes from."`
	Containers []Container `toml:"container" doc:"Container images to carry."`
	OSImages   []OSImage   `toml:"os_image" doc:"OS disk images hosts are provisioned with."`
	Netboot    []Netboot   `toml:"netboot" doc:"Kernels, initramfs and iPXE binaries for PXE."`
	Files      []File      `toml:"file" doc:"Any other files to carry."`
	Site       SiteSeed    `toml:"site" doc:"The site directory shipped with the appliance."`
	Signing    Signing     `toml:"signing" required:"true" doc:"How the bundle index is signed."`
	Agent      *Agent      `toml:"agent" doc:"The netboot agent: the build writes its kernel and initramfs from Debian's kernel package."`

	doc *tomlpos.Document // where each key is, for the problems found after loading
}

// Agent is the [agent] table: with it the build writes the netboot agent's kernel (vmlinuz),
// its initramfs (cairn-agent.initramfs) and the agent binary (cairn-agent) into the store.
type Agent struct {
	Kernel   Package   `toml:"kernel" required:"true" doc:"Debian's kernel package (linux-image-VERSION-amd64 .deb): vmlinuz and the modules come out of it."`
	Binary   string    `toml:"binary" doc:"The static cairn-agent (relative to build.toml); default: cairn-agent beside the cairn executable."`
	Modules  []string  `toml:"modules" doc:"Kernel modules to carry (with what they depend on), instead of the default list."`
	Firmware []Package `toml:"firmware" doc:"Debian firmware packages (.deb) to take the modules' firmware from."`
}

// Package is a Debian package the build fetches: a source and its sha256.
type Package struct {
	Source string `toml:"source" required:"true" doc:"go-getter URL or path (relative to build.toml) of the .deb."`
	SHA256 string `toml:"sha256" required:"true" pattern:"^[0-9a-f]{64}$" doc:"SHA-256 of the .deb."`
}

// Appliance is the [appliance] table.
type Appliance struct {
	Base   string `toml:"base" doc:"go-getter URL or path of a prebuilt appliance base (vmlinuz, initrd.img, filesystem.squashfs); default: build it from appliance/."`
	SHA256 string `toml:"sha256" pattern:"^[0-9a-f]{64}$" doc:"SHA-256 of the base when it is a single archive file."`
}

// Container is one [[container]].
type Container struct {
	Ref       string   `toml:"ref" required:"true" doc:"Image reference with a tag or a digest, e.g. docker.io/library/nginx:1.27."`
	Platforms []string `toml:"platforms" doc:"Platforms to carry, e.g. [\"linux/amd64\", \"linux/arm64\"]. Default linux/amd64."`
	Rename    string   `toml:"rename" doc:"Name to carry the image under instead of its upstream name."`
}

// OSImage is one [[os_image]].
type OSImage struct {
	Name               string `toml:"name" required:"true" pattern:"^[a-z0-9][a-z0-9._-]*$" doc:"Name hosts refer to (os = \"...\" in the site)."`
	Source             string `toml:"source" required:"true" doc:"go-getter URL or path (relative to build.toml) of the image file."`
	SHA256             string `toml:"sha256" required:"true" pattern:"^[0-9a-f]{64}$" doc:"SHA-256 of the file as fetched."`
	Format             string `toml:"format" enum:"raw|raw+zstd|raw+gz|raw+xz|qcow2" doc:"Encoding of the file; default: detected from its content."`
	UncompressedSHA256 string `toml:"uncompressed_sha256" pattern:"^[0-9a-f]{64}$" doc:"SHA-256 of the decompressed disk image, checked when given."`
}

// Netboot is one [[netboot]].
type Netboot struct {
	Name   string `toml:"name" required:"true" pattern:"^[a-z0-9][a-z0-9._-]*$" doc:"Name of the asset."`
	Type   string `toml:"type" required:"true" enum:"kernel|initramfs|ipxe" doc:"What the asset is."`
	Source string `toml:"source" required:"true" doc:"go-getter URL or path (relative to build.toml)."`
	SHA256 string `toml:"sha256" required:"true" pattern:"^[0-9a-f]{64}$" doc:"SHA-256 of the file as fetched."`
}

// File is one [[file]].
type File struct {
	Name   string `toml:"name" required:"true" pattern:"^[a-z0-9][a-z0-9._-]*$" doc:"Name of the file in the bundle."`
	Source string `toml:"source" required:"true" doc:"go-getter URL or path (relative to build.toml)."`
	SHA256 string `toml:"sha256" required:"true" pattern:"^[0-9a-f]{64}$" doc:"SHA-256 of the file as fetched."`
}

// SiteSeed is the [site] table.
type SiteSeed struct {
	Seed string `toml:"seed" doc:"Site directory (relative to build.toml) to ship; it is validated like cairn site validate."`
}

// Signing is the [signing] table.
type Signing struct {
	Key string `toml:"key" required:"true" doc:"ed25519 private key file (PEM, from cairn bundle keygen), relative to build.toml."`
}

var patternText = map[string]string{
	`^[a-z0-9][a-z0-9._-]*$`: "a name of lowercase letters, digits, '.', '_' and '-', starting with a letter or digit",
	moduleNamePattern:        "a module name of lowercase letters, digits, '_' and '-', such as \"mlx5_core\"",
	`^[0-9a-f]{64}$`:         "64 lowercase hexadecimal digits (sha256sum prints them)",
}

var decoder = tomlpos.Decoder{Patterns: patternText}

var platformRe = regexp.MustCompile(`^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$`)

// DefaultPlatform is what a [[container]] without platforms carries.
const DefaultPlatform = "linux/amd64"

// LoadConfig reads and checks a build.toml. Problems come back as tomlpos.Errors, all at once,
// each with file, line and column.
func LoadConfig(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading build file: %w", err)
	}
	doc, perr := tomlpos.Parse(path, src)
	if perr != nil {
		return nil, tomlpos.Errors{perr}
	}
	c := &Config{Path: path, doc: doc}
	errs := decoder.Decode(doc, c, "build file")
	errs = append(errs, c.check(doc)...)
	if len(errs) > 0 {
		errs.Sort()
		return nil, errs
	}
	for i := range c.Containers {
		if len(c.Containers[i].Platforms) == 0 {
			c.Containers[i].Platforms = []string{DefaultPlatform}
		}
	}
	return c, nil
}

// check runs the checks that span values: references parse, names are unique, files exist.
func (c *Config) check(doc *tomlpos.Document) tomlpos.Errors {
	var errs tomlpos.Errors
	add := func(path, msg, hint string) { errs = append(errs, doc.ErrAt(path, false, msg, hint)) }
	stored := map[string]string{} // stored name -> path of the container that takes it
	for i, ct := range c.Containers {
		p := tomlpos.Elem("container", i)
		if ct.Ref == "" {
			continue
		}
		if _, err := reference.ParseNormalizedNamed(ct.Ref); err != nil {
			add(p+".ref", fmt.Sprintf("%q is not an image reference (%v)", ct.Ref, err), `write REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:DIGEST, e.g. "docker.io/library/nginx:1.27"`)
			continue
		}
		name, namePath := ct.Ref, p+".ref"
		if ct.Rename != "" {
			name, namePath = ct.Rename, p+".rename"
			if _, err := reference.ParseNormalizedNamed(ct.Rename); err != nil {
				add(p+".rename", fmt.Sprintf("%q is not an image name (%v)", ct.Rename, err), `write REGISTRY/REPOSITORY:TAG, e.g. "registry.local/web:1.0"`)
				continue
			}
		}
		key := storedName(name)
		if other, dup := stored[key]; dup {
			add(namePath, fmt.Sprintf("%s is already carried by %s", key, doc.Where(other)), "carry each image once, or rename one")
		}
		stored[key] = namePath
		for j, pl := range ct.Platforms {
			if !platformRe.MatchString(pl) {
				add(tomlpos.Elem(p+".platforms", j), fmt.Sprintf("%q is not a platform", pl), `write OS/ARCH[/VARIANT], e.g. "linux/amd64" or "linux/arm64/v8"`)
			} else if slices.Index(ct.Platforms, pl) < j {
				add(tomlpos.Elem(p+".platforms", j), fmt.Sprintf("platform %s is listed twice", pl), "remove one")
			}
		}
	}
	for kind, names := range map[string][]string{"os_image": namesOf(c.OSImages), "netboot": namesOf(c.Netboot), "file": namesOf(c.Files)} {
		seen := map[string]int{}
		for i, n := range names {
			if j, dup := seen[n]; dup && n != "" {
				add(tomlpos.Elem(kind, i)+".name", fmt.Sprintf("%s %q is already defined at %s", kind, n, doc.Where(tomlpos.Elem(kind, j)+".name")), "give each one its own name")
			}
			seen[n] = i
		}
	}
	if c.Appliance.SHA256 != "" && c.Appliance.Base == "" {
		add("appliance.sha256", "sha256 without base", "set appliance.base, or remove appliance.sha256")
	}
	errs = append(errs, c.checkAgent(doc)...)
	return errs
}

// moduleNamePattern is what a kernel module's name looks like.
const moduleNamePattern = `^[a-z0-9][a-z0-9_-]*$`

// checkAgent checks the [agent] table: module names, the binary when named, and that no
// [[netboot]] or [[file]] takes the names of the artifacts the agent makes.
func (c *Config) checkAgent(doc *tomlpos.Document) tomlpos.Errors {
	a := c.Agent
	if a == nil {
		return nil
	}
	var errs tomlpos.Errors
	add := func(path, msg, hint string) { errs = append(errs, doc.ErrAt(path, false, msg, hint)) }
	for i, m := range a.Modules {
		p := tomlpos.Elem("agent.modules", i)
		switch {
		case m == "": // the decoder says so
		case !matchModuleName(m):
			add(p, fmt.Sprintf("expected %s, got %q", patternText[moduleNamePattern], m), "write the module's name as lsmod or modinfo print it, without .ko")
		case slices.IndexFunc(a.Modules, func(o string) bool { return sameModule(o, m) }) < i:
			add(p, fmt.Sprintf("module %s is listed twice", m), "remove one")
		}
	}
	if a.Binary != "" {
		if info, err := os.Stat(c.Resolve(a.Binary)); err != nil || !info.Mode().IsRegular() {
			add("agent.binary", fmt.Sprintf("no agent binary at %s", c.Resolve(a.Binary)), "build it with make build (bin/cairn-agent), or remove agent.binary to take the cairn-agent beside cairn")
		}
	}
	for i, n := range c.Netboot {
		if n.Name == initramfs.KernelArtifact || n.Name == initramfs.InitramfsArtifact {
			add(tomlpos.Elem("netboot", i)+".name", fmt.Sprintf("netboot %q is the name of what [agent] makes", n.Name), "rename this asset, or remove [agent] to carry your own kernel and initramfs")
		}
	}
	for i, f := range c.Files {
		if f.Name == initramfs.AgentArtifact {
			add(tomlpos.Elem("file", i)+".name", fmt.Sprintf("file %q is the name of the agent binary [agent] carries", f.Name), "rename this file")
		}
	}
	return errs
}

var moduleNameRe = regexp.MustCompile(moduleNamePattern)

func matchModuleName(s string) bool { return moduleNameRe.MatchString(s) }

// sameModule reports whether two module names are one: "-" and "_" are the same to modprobe.
func sameModule(a, b string) bool {
	return strings.ReplaceAll(a, "-", "_") == strings.ReplaceAll(b, "-", "_")
}

// errAt is a problem at a key of build.toml, positioned as the loader's are.
func (c *Config) errAt(path, msg, hint string) error {
	if c.doc == nil {
		return fmt.Errorf("%s: %s: %s; %s", c.Path, path, msg, hint)
	}
	return tomlpos.Errors{c.doc.ErrAt(path, false, msg, hint)}
}

func namesOf[T OSImage | Netboot | File](items []T) []string {
	names := make([]string, len(items))
	for i, it := range items {
		switch v := any(it).(type) {
		case OSImage:
			names[i] = v.Name
		case Netboot:
			names[i] = v.Name
		case File:
			names[i] = v.Name
		}
	}
	return names
}

// storedName is the repository:tag (or repository@digest) an image reference is carried under.
func storedName(ref string) string {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return ref
	}
	return reference.TagNameOnly(named).String()
}

// Resolve turns a path from build.toml into one usable from the current directory.
func (c *Config) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(c.Path), p)
}

// parsePlatform reads "os/arch[/variant]".
func parsePlatform(s string) (v1.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return v1.Platform{}, errors.New("expected OS/ARCH[/VARIANT]")
	}
	p := v1.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}
