// Package backup writes and restores one archive of an appliance: its state file, its site
// directory and its upper store, taken together so that they match.
//
// An archive is a tar stream compressed with zstd. Its entries are sorted by path, and every
// header is the same whatever the files' owners, times and modes were (PAX format, modification
// time the Unix epoch, uid and gid 0, no user or group names, mode 0600 for the state file,
// 0644 for other files and 0755 for directories), so that the same state file, site and store
// give a byte-identical archive. It holds:
//
//   - site/…: every regular file and directory of the site directory, except what the site
//     passes over (site.Ignored: hidden names such as .git, and editor backups). A symlink
//     that resolves inside the site is stored as what it resolves to (a file with its
//     content, a directory with its files), as the site loader and the watcher read it; one
//     that leads outside the site or nowhere is refused, naming it;
//   - state.db: the bbolt state file as of one commit, written by a read transaction
//     (state.Snapshot), so it is taken while the daemon runs;
//   - store/…: the upper store, the local store that cairn writes beside the medium's, when
//     there is one. The store on the boot medium is not in the archive: the medium carries it;
//   - MANIFEST.json, last: the format version, cairn's version, a summary of the state, the
//     fingerprint of the site copied, and every other entry with its size and sha256.
//
// Take copies the state and the site together; run it between two loads of the site (the
// daemon does, under its converger's lock) so that the state is the one that load left and
// Matches can tell whether the site copied is the one it loaded. Detach moves the state out of
// its read transaction before a slow write, and Snapshot.Write writes the archive. FromFiles
// does all of it for a stopped appliance. Verify, and a Verifier an archive is written
// through, check an archive against its manifest without restoring it.
//
// Restore reads an archive whole into temporary directories beside its destination, checking
// every entry against the manifest, and only then moves the state file, the site and the
// store into place; an archive that fails a check changes nothing. It refuses while the state
// file is in use (the daemon runs), and replaces an appliance's data only when told to.
//
// The package does not talk HTTP or know where an appliance keeps its files: the daemon serves
// backups through its API and the CLI passes the paths of the daemon's configuration.
package backup
