package build

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cairn-appliance/cairn/agent/initramfs"
	"github.com/cairn-appliance/cairn/airgap"
	"github.com/cairn-appliance/cairn/site/tomlpos"
)

// kindAgent is the kind of the sources [agent] names: packages fetched into the cache and
// locked like every source, read to make the agent's artifacts, and not stored themselves.
const kindAgent = "agent"

// AgentReport is what the build says of the netboot agent it made from [agent].
type AgentReport struct {
	// KernelVersion is the kernel's release: 6.12.117+deb13-amd64.
	KernelVersion string
	// Modules are the modules carried, in load order: VERSION/kernel/....
	Modules []string
	// Firmware are the firmware files carried, under lib/firmware.
	Firmware []string
	// MissingFirmware are the files the modules name (firmware=) that no agent.firmware
	// package holds: a card that needs one may not work.
	MissingFirmware []string
	// SkippedModules are the modules of the default list this kernel lacks.
	SkippedModules []string
	// BuiltinModules are the modules asked for that are built into the kernel.
	BuiltinModules []string
	// InitramfsSize is the size of the initramfs (gzip-compressed).
	InitramfsSize int64
	// Took is how long making the initramfs took, once the packages were in the cache.
	Took time.Duration
}

// Notes are what an operator should know of the agent: what it lacks.
func (r *AgentReport) Notes() []string {
	var notes []string
	if len(r.SkippedModules) > 0 {
		notes = append(notes, fmt.Sprintf("agent: kernel %s has no module %s of the default list; skipped", r.KernelVersion, strings.Join(r.SkippedModules, ", ")))
	}
	if len(r.BuiltinModules) > 0 {
		notes = append(notes, fmt.Sprintf("agent: %s built into kernel %s: nothing to carry", strings.Join(r.BuiltinModules, ", "), r.KernelVersion))
	}
	if len(r.MissingFirmware) > 0 {
		notes = append(notes, fmt.Sprintf("agent: %d firmware file(s) the modules may ask for are in no agent.firmware package, and not carried (cards that need them may not work): %s",
			len(r.MissingFirmware), strings.Join(r.MissingFirmware, ", ")))
	}
	return notes
}

// agentSources lists the packages [agent] names: agent.kernel, then agent.firmware[i].
func agentSources(cfg *Config) []source {
	a := cfg.Agent
	if a == nil {
		return nil
	}
	out := []source{{Kind: kindAgent, Name: "kernel", Source: a.Kernel.Source, SHA256: a.Kernel.SHA256}}
	for i, fw := range a.Firmware {
		out = append(out, source{Kind: kindAgent, Name: fmt.Sprintf("firmware[%d]", i), Source: fw.Source, SHA256: fw.SHA256})
	}
	return out
}

// agentBinary finds the static cairn-agent [agent] carries: agent.binary, else
// Options.AgentBinary, else cairn-agent beside the cairn executable (Options.CairnBinary or
// this process's, as it is named or where its links lead). It must be a static x86-64 ELF
// executable: the kernel runs it as /init.
func agentBinary(cfg *Config, o Options) (string, error) {
	if cfg.Agent.Binary != "" {
		p := cfg.Resolve(cfg.Agent.Binary)
		if err := checkAgentBinary(p); err != nil {
			return "", cfg.errAt("agent.binary", err.Error(), "build it with make build (CGO_ENABLED=0), which writes bin/cairn-agent")
		}
		return p, nil
	}
	if o.AgentBinary != "" {
		return o.AgentBinary, checkAgentBinary(o.AgentBinary)
	}
	exe := o.CairnBinary
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return "", fmt.Errorf("finding cairn-agent beside cairn (set agent.binary in %s): %w", cfg.Path, err)
		}
	}
	candidates := []string{filepath.Join(filepath.Dir(exe), initramfs.AgentArtifact)}
	if real, err := filepath.EvalSymlinks(exe); err == nil && filepath.Dir(real) != filepath.Dir(exe) {
		candidates = append(candidates, filepath.Join(filepath.Dir(real), initramfs.AgentArtifact))
	}
	for _, p := range candidates {
		if _, err := os.Stat(p); err == nil {
			return p, checkAgentBinary(p)
		}
	}
	return "", fmt.Errorf("[agent] in %s: agent.binary is not set and there is no cairn-agent beside cairn (%s): run `make build`, which writes bin/cairn-agent beside bin/cairn, or set agent.binary to the static cairn-agent",
		cfg.Path, strings.Join(candidates, " or "))
}

// checkAgentBinary refuses what cannot be a netboot /init: not an x86-64 ELF executable, or
// one that needs a dynamic loader the initramfs does not have.
func checkAgentBinary(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("agent binary %s: expected the static cairn-agent (an ELF executable): %w", p, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("agent binary %s is a %s %s file, not an x86-64 executable: build it with GOARCH=amd64", p, f.Machine, f.Type)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("agent binary %s is linked dynamically, and the initramfs has no dynamic loader: build it with CGO_ENABLED=0 (make build does)", p)
		}
	}
	return nil
}

// agentModules are the module names the initramfs carries, and whether a name the kernel lacks
// is skipped (the default list) rather than an error (build.toml's own list).
func agentModules(cfg *Config) ([]string, bool) {
	if len(cfg.Agent.Modules) > 0 {
		return cfg.Agent.Modules, false
	}
	return slices.Concat(initramfs.DefaultModules, initramfs.ServerModules), true
}

// kernelDir is where the cache keeps a kernel package unpacked, by the package's sha256.
func (c *Cache) kernelDir(hexDigest string) string {
	return filepath.Join(c.Dir, "kernels", hexDigest)
}

// addAgent makes the netboot agent's artifacts from [agent] and adds them to the store: the
// kernel package's vmlinuz, the initramfs (the agent as /init, the modules, their firmware)
// and the agent binary as a file. The packages are fetched into the cache first (each with
// its own progress), and the kernel package is unpacked there once.
func addAgent(ctx context.Context, store *airgap.Store, cfg *Config, created time.Time, binary, tmp string, srcs []source, f *fetcher, prog progress) (*AgentReport, error) {
	paths := make([]string, len(srcs))
	for i, s := range srcs {
		t := prog.track(s.label(), s.Size)
		ff := *f
		ff.progress = func(_ source, done, total int64) { t.set(done, total) }
		p, err := ff.fetch(ctx, s)
		t.finish(err)
		if err != nil {
			return nil, err
		}
		paths[i] = p
	}
	t := prog.track("netboot "+initramfs.InitramfsArtifact, -1)
	rep, err := writeAgent(ctx, store, cfg, created, binary, tmp, srcs, paths, f.cache)
	t.finish(err)
	return rep, err
}

func writeAgent(ctx context.Context, store *airgap.Store, cfg *Config, created time.Time, binary, tmp string, srcs []source, paths []string, cache *Cache) (*AgentReport, error) {
	start := time.Now()
	k, err := initramfs.UnpackKernel(ctx, paths[0], cache.kernelDir(srcs[0].SHA256))
	if err != nil {
		return nil, fmt.Errorf("agent.kernel (%s): %w", srcs[0].Source, err)
	}
	names, skip := agentModules(cfg)
	sel, err := k.Resolve(names, skip)
	var missing *initramfs.MissingModulesError
	if errors.As(err, &missing) {
		// Only build.toml's own list is an error; each name is a problem at its place.
		var errs tomlpos.Errors
		for _, n := range missing.Names {
			e := cfg.errAt(tomlpos.Elem("agent.modules", slices.Index(cfg.Agent.Modules, n)),
				fmt.Sprintf("kernel %s (agent.kernel) has no module %s, neither as a file nor built in", k.Version, n),
				"check the name (modinfo NAME on a machine running this kernel), or remove it")
			var es tomlpos.Errors
			if !errors.As(e, &es) {
				return nil, e
			}
			errs = append(errs, es...)
		}
		return nil, errs
	}
	if err != nil {
		return nil, fmt.Errorf("agent.kernel (%s): %w", srcs[0].Source, err)
	}
	rep := &AgentReport{KernelVersion: k.Version, SkippedModules: sel.Missing, BuiltinModules: sel.Builtin}
	for _, m := range sel.Modules {
		rep.Modules = append(rep.Modules, m.Path)
	}
	var fws []initramfs.Firmware
	rep.MissingFirmware = sel.Firmware
	if len(paths) > 1 && len(sel.Firmware) > 0 {
		if fws, rep.MissingFirmware, err = initramfs.FirmwareFromDebs(ctx, paths[1:], sel.Firmware); err != nil {
			return nil, fmt.Errorf("agent.firmware: %w", err)
		}
	}
	for _, fw := range fws {
		rep.Firmware = append(rep.Firmware, fw.Path)
	}
	initrd := filepath.Join(tmp, initramfs.InitramfsArtifact)
	out, err := os.Create(initrd)
	if err != nil {
		return nil, err
	}
	defer os.Remove(initrd)
	err = initramfs.Write(out, initramfs.Config{Agent: binary, Modules: sel.Modules, Firmware: fws, ModTime: created})
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("writing the agent's initramfs: %w", err)
	}
	if info, err := os.Stat(initrd); err == nil {
		rep.InitramfsSize = info.Size()
	}
	rep.Took = time.Since(start)
	if err := store.AddNetboot(ctx, airgap.NetbootAsset{Name: initramfs.KernelArtifact, Path: k.Vmlinuz(), Type: airgap.NetbootKernel}); err != nil {
		return nil, err
	}
	if err := store.AddNetboot(ctx, airgap.NetbootAsset{Name: initramfs.InitramfsArtifact, Path: initrd, Type: airgap.NetbootInitramfs}); err != nil {
		return nil, err
	}
	if err := store.AddFile(ctx, airgap.File{Name: initramfs.AgentArtifact, Path: binary}); err != nil {
		return nil, err
	}
	return rep, nil
}

// agentPlan is what the plan says of [agent]'s artifacts before any is made: the kernel's size
// when the cache has its package unpacked, the binary's, and the initramfs as unknown.
func agentPlan(cfg *Config, cache *Cache, binary string) []PlannedArtifact {
	if cfg.Agent == nil {
		return nil
	}
	kernel := PlannedArtifact{Kind: "netboot", Name: initramfs.KernelArtifact, Ref: "netboot/" + initramfs.KernelArtifact + ":latest", Size: -1}
	if k, err := initramfs.OpenKernel(cache.kernelDir(cfg.Agent.Kernel.SHA256)); err == nil {
		if info, err := os.Stat(k.Vmlinuz()); err == nil {
			kernel.Size, kernel.Cached = info.Size(), info.Size()
		}
	}
	agent := PlannedArtifact{Kind: "file", Name: initramfs.AgentArtifact, Ref: "files/" + initramfs.AgentArtifact + ":latest", Size: -1}
	if info, err := os.Stat(binary); err == nil {
		agent.Size, agent.Cached = info.Size(), info.Size()
	}
	return []PlannedArtifact{
		kernel,
		{Kind: "netboot", Name: initramfs.InitramfsArtifact, Ref: "netboot/" + initramfs.InitramfsArtifact + ":latest", Size: -1},
		agent,
	}
}
