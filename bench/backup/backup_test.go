package backup

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-appliance/cairn/daemon/backup"
	"github.com/cairn-appliance/cairn/daemon/reconcile"
	"github.com/cairn-appliance/cairn/daemon/state"
	"github.com/cairn-appliance/cairn/daemon/watch"
	"github.com/cairn-appliance/cairn/site"
	"github.com/cairn-appliance/cairn/site/sitetest"
)

// BenchmarkBackup backs up the example site with its state, and a hall of 10,000 hosts with
// its state (every host applied, and an event log full to its retention), each beside the
// anchor: tar --sort=name -cf - state.db site | zstd.
func BenchmarkBackup(b *testing.B) {
	for _, tt := range []struct {
		name  string
		hosts int
	}{{"example", 0}, {"hosts=10000", 10000}} {
		b.Run(tt.name, func(b *testing.B) {
			dir := b.TempDir()
			tg := appliance(b, dir, tt.hosts)
			out := filepath.Join(b.TempDir(), "backup.tar.zst")
			var size int64
			for b.Loop() {
				size = write(b, tg, out)
			}
			ours := b.Elapsed() / time.Duration(b.N)

			anchorOut := filepath.Join(b.TempDir(), "anchor.tar.zst")
			var anchorTime time.Duration
			for range b.N {
				anchorTime += runAnchor(b, dir, anchorOut)
			}
			anchorTime /= time.Duration(b.N)
			info, err := os.Stat(anchorOut)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(size), "archive-B")
			b.ReportMetric(float64(info.Size()), "anchor-B")
			b.ReportMetric(float64(ours.Milliseconds()), "backup-ms")
			b.ReportMetric(float64(anchorTime.Milliseconds()), "anchor-ms")
			b.ReportMetric(float64(size)/float64(info.Size()), "size-x-anchor")
			b.ReportMetric(float64(ours)/float64(anchorTime), "time-x-anchor")
			b.Logf("%s: archive %d bytes in %v (state %d bytes, site %d files); anchor tar | zstd %d bytes in %v; size x%.2f, time x%.2f",
				tt.name, size, ours.Round(time.Millisecond), fileSize(b, tg.State), countFiles(b, tg.Site), info.Size(), anchorTime.Round(time.Millisecond),
				float64(size)/float64(info.Size()), float64(ours)/float64(anchorTime))
		})
	}
}

// write backs up tg to out as cairn appliance backup does without a daemon: the archive is
// read back and checked as it is written, and renamed into place whole.
func write(b *testing.B, tg backup.Target, out string) int64 {
	f, err := backup.CreateArchive(out)
	if err != nil {
		b.Fatal(err)
	}
	v := backup.NewVerifier()
	_, err = backup.FromFiles(context.Background(), io.MultiWriter(f, v), tg, "bench")
	if _, verr := v.Close(); err == nil {
		err = verr
	}
	if err == nil {
		err = f.Commit()
	}
	if err != nil {
		f.Abort()
		b.Fatal(err)
	}
	return v.Size()
}

// runAnchor archives the same files with GNU tar and the zstd command.
func runAnchor(b *testing.B, dir, out string) time.Duration {
	for _, tool := range []string{"tar", "zstd"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s is not installed; it is this benchmark's anchor: run scripts/deps.sh", tool)
		}
	}
	start := time.Now()
	cmd := exec.Command("bash", "-o", "pipefail", "-c", `tar --sort=name -C "$1" -cf - state.db site | zstd -q -f -o "$2"`, "anchor", dir, out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("anchor: %v\n%s", err, msg)
	}
	return time.Since(start)
}

// appliance writes a site (the example, or a hall of n hosts) and its applied state into dir.
func appliance(b *testing.B, dir string, n int) backup.Target {
	tg := backup.Target{State: filepath.Join(dir, "state.db"), Site: filepath.Join(dir, "site")}
	if n == 0 {
		if err := os.CopyFS(tg.Site, os.DirFS("../../examples/site")); err != nil {
			b.Fatal(err)
		}
	} else {
		files := sitetest.Hall("docker.io/library/nginx:1.27", "quay.io/prometheus/node-exporter:v1.8.2")
		for i := range n {
			files[fmt.Sprintf("hosts/h%05d.toml", i)] = sitetest.HallHost(i, 0, "r1")
		}
		sitetest.Write(b, tg.Site, files)
	}
	s, err := site.Load(tg.Site)
	if err != nil {
		b.Fatal(err)
	}
	w, err := watch.New(watch.Config{Dir: tg.Site})
	if err != nil {
		b.Fatal(err)
	}
	st, err := state.Open(tg.State, state.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	if _, err := reconcile.Apply(ctx, st, s, 1, w.Fingerprint()); err != nil {
		b.Fatal(err)
	}
	// A busy appliance's log: an event for each host, up to the retention.
	for i := 0; i < min(n, state.DefaultRetention); i += 1000 {
		err := st.Update(ctx, func(tx state.Tx) error {
			for j := i; j < min(i+1000, n); j++ {
				if err := tx.Append(state.Event{Host: fmt.Sprintf("h%05d", j), Kind: "host.phase", Message: "pending: waiting to be provisioned"}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return tg
}

func fileSize(b *testing.B, p string) int64 {
	info, err := os.Stat(p)
	if err != nil {
		b.Fatal(err)
	}
	return info.Size()
}

func countFiles(b *testing.B, dir string) int {
	n := 0
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}
