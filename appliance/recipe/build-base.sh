#!/usr/bin/env bash
# Builds the appliance base from this recipe: OUT/vmlinuz, OUT/initrd.img and OUT/filesystem.squashfs.
# Usage: build-base.sh OUT   (run as root: mmdebstrap installs the kernel and makes the initramfs)
# MIRROR overrides the Debian mirror. The Go side (appliance.Build) runs this and caches OUT by
# the hash of the recipe; run it through `make appliance-base` rather than by hand.
set -euo pipefail

out=${1:?usage: build-base.sh OUT}
here=$(cd "$(dirname "$0")" && pwd)
mirror=${MIRROR:-http://deb.debian.org/debian}
suite=trixie

for tool in mmdebstrap mksquashfs; do
  command -v "$tool" >/dev/null || { echo "build-base.sh: $tool is missing; run scripts/deps.sh" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-base.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root

packages=$(grep -v '^\s*#' "$here/packages" | xargs | tr ' ' ',')

# Overlay files are root-owned and world-readable whatever the checkout's umask was.
chmod -R u=rwX,go=rX "$here/overlay"

mmdebstrap --variant=apt --mode=root \
  --include="$packages" \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --aptopt='Acquire::Languages "none"' \
  --customize-hook="sync-in '$here/overlay' /" \
  --customize-hook='chroot "$1" systemctl enable cairn.service systemd-networkd.service' \
  --customize-hook='chroot "$1" systemctl mask systemd-networkd-wait-online.service' \
  --customize-hook='rm -f "$1"/etc/machine-id "$1"/var/lib/dbus/machine-id; : > "$1"/etc/machine-id' \
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
  "$suite" "$root" "$mirror"

kernel=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -n1)
initrd=$(ls "$root"/boot/initrd.img-* | sort -V | tail -n1)
cp "$kernel" "$out/vmlinuz"
cp "$initrd" "$out/initrd.img"

# The kernel and initramfs boot from the medium, not from the squashfs.
rm -f "$root"/boot/vmlinuz-* "$root"/boot/initrd.img-* "$root"/vmlinuz* "$root"/initrd.img*

# mksquashfs takes its timestamps from SOURCE_DATE_EPOCH when it is set.
mksquashfs "$root" "$out/filesystem.squashfs" -comp zstd -noappend -quiet -no-progress
echo "build-base.sh: $(basename "$kernel"), $(basename "$initrd") and a $(du -h "$out/filesystem.squashfs" | cut -f1) root squashfs in $out"
