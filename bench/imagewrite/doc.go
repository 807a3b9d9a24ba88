// Package imagewrite benchmarks cairn's OS image writer (package agent/image, run as
// `cairn-agent image write` in a process of its own) beside its anchor in the same run: the
// shell pipeline `curl -s URL | zstd -d | dd of=FILE bs=1M conv=sparse`. Both fetch the same
// 2 GiB raw image, compressed with zstd, from a net/http file server on 127.0.0.1, and write
// it to a file on the same file system: a "full" image (compressible data, no zero runs) and
// one that is 60 % zeros. It reports each one's wall time and MB/s, their ratio, and the
// agent's peak RSS. It holds only benchmarks; run them with make bench.
package imagewrite
