// Package backup benchmarks cairn appliance backup (package daemon/backup) on the example
// site's state and on a 10,000-host state: the archive's size and the time to write it (read
// back and checked as it is written, as the command does), beside its anchor, GNU tar
// --sort=name piped to the zstd command at its default level, over the same files. It holds
// only benchmarks; run them with make bench.
package backup
