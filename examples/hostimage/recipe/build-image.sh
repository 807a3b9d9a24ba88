#!/usr/bin/env bash
# Builds the example host OS disk image from this recipe: OUT/disk.raw (GPT: BIOS boot, ESP,
# root ext4), OUT/boot.img and OUT/core.img (GRUB's BIOS boot code, which the Go side writes
# into the MBR and the BIOS boot partition), and OUT/packages.txt (what was installed).
# Usage: build-image.sh OUT   (run as root: mmdebstrap installs a kernel and makes an initramfs)
# MIRROR overrides the Debian mirror. Nothing is mounted: the file systems are made from
# directories (mkfs.ext4 -d, mtools) and copied into the disk at their offsets.
# Run it through `make host-image` (hostimage.Build), which caches the result by recipe hash.
set -euo pipefail

out=${1:?usage: build-image.sh OUT}
here=$(cd "$(dirname "$0")" && pwd)
mirror=${MIRROR:-http://deb.debian.org/debian}
suite=trixie

for tool in mmdebstrap mkfs.ext4 mkfs.vfat mmd mcopy sfdisk truncate; do
  command -v "$tool" >/dev/null || { echo "build-image.sh: $tool is missing; run scripts/deps.sh" >&2; exit 1; }
done

# shellcheck source=layout
. "$here/layout"
export SOURCE_DATE_EPOCH
export E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH
export LC_ALL=C.UTF-8 TZ=UTC

work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-host-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root

packages=$(grep -v '^\s*#' "$here/packages" | xargs | tr ' ' ',')

# Overlay files are root-owned and world-readable whatever the checkout's umask was.
chmod -R u=rwX,go=rX "$here/overlay"

echo "build-image.sh: installing Debian $suite from $mirror"
mmdebstrap --variant=apt --mode=root \
  --include="$packages" \
  --aptopt='APT::Install-Recommends "false"' \
  --aptopt='Acquire::Languages "none"' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/lintian/*' \
  "$suite" "$root" "$mirror"

# --- the tree: configuration -----------------------------------------------------------
chroot "$root" dpkg-query -W -f='${Package} ${Version}\n' > "$out/packages.txt"
cp -a "$here/overlay/." "$root/"

cat > "$root/etc/fstab" <<EOF
# The root by its file system UUID; the ESP only when present (nofail).
UUID=$ROOT_UUID  /          ext4  errors=remount-ro      0  1
UUID=${ESP_ID:0:4}-${ESP_ID:4:4}  /boot/efi  vfat  umask=0077,nofail  0  2
EOF
mkdir -p "$root/boot/efi" "$root/boot/grub"

cat > "$root/boot/grub/grub.cfg" <<EOF
# Static: GRUB's own images carry every module this needs. /vmlinuz and /initrd.img are the
# links Debian's kernel packages keep to the newest kernel.
set timeout=1
set default=0
serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1
terminal_input console serial
terminal_output console serial

menuentry 'Debian GNU/Linux 13 (cairn host)' {
	search --no-floppy --fs-uuid --set=root $ROOT_UUID
	linux /vmlinuz root=UUID=$ROOT_UUID ro console=tty0 console=ttyS0,115200n8
	initrd /initrd.img
}
EOF

echo "$HOSTNAME" > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' "$HOSTNAME" > "$root/etc/hosts"
ln -sfn ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"

# No ssh over AF_VSOCK or AF_UNIX: that generator only fails to find a vsock on every boot.
mkdir -p "$root/etc/systemd/system-generators"
ln -sfn /dev/null "$root/etc/systemd/system-generators/systemd-ssh-generator"
chroot "$root" systemctl enable systemd-networkd.service systemd-resolved.service ssh.service serial-getty@ttyS0.service

# Per-machine identity is made at first boot: no ssh host keys, an empty machine-id (systemd
# fills it), no random seed; and no apt lists or logs of the build.
rm -f "$root"/etc/ssh/ssh_host_*
rm -f "$root/etc/machine-id" "$root/var/lib/dbus/machine-id" "$root/var/lib/systemd/random-seed"
: > "$root/etc/machine-id"
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/var/cache/debconf/*-old \
  "$root"/var/lib/dpkg/*-old "$root"/tmp/* "$root"/var/tmp/*
find "$root/var/log" -type f -delete

# --- GRUB: one image per firmware, made with the tree's own GRUB ------------------------
cat > "$root/tmp/early.cfg" <<EOF
search --no-floppy --fs-uuid --set=root $ROOT_UUID
set prefix=(\$root)/boot/grub
EOF
common="normal configfile boot linux search search_fs_uuid search_label part_gpt part_msdos ext2 fat
  serial terminal echo test ls cat minicmd reboot halt sleep gzio"
# shellcheck disable=SC2086 # word splitting of the module lists is meant
chroot "$root" grub-mkimage -O i386-pc -o /tmp/core.img -c /tmp/early.cfg -p /boot/grub $common biosdisk
# shellcheck disable=SC2086
chroot "$root" grub-mkimage -O x86_64-efi -o /tmp/BOOTX64.EFI -c /tmp/early.cfg -p /boot/grub $common efi_gop all_video
mv "$root/tmp/core.img" "$root/tmp/BOOTX64.EFI" "$work/"
rm -f "$root/tmp/early.cfg"
cp "$root/usr/lib/grub/i386-pc/boot.img" "$out/boot.img"
cp "$work/core.img" "$out/core.img"

# First boot need not rebuild the caches of /etc and /var (ConditionNeedsUpdate): they match /usr.
touch "$root/etc/.updated" "$root/var/.updated"

# Every time stamp in the tree is the recipe's, so two builds differ less.
find "$root" -newermt "@$SOURCE_DATE_EPOCH" -print0 | xargs -0r touch --no-dereference --date="@$SOURCE_DATE_EPOCH"

# --- the file systems -------------------------------------------------------------------
mib=$((1024 * 1024))
bios_start=1
esp_start=$((bios_start + BIOS_MIB))
root_start=$((esp_start + ESP_MIB))
root_mib=$((DISK_MIB - root_start - 1))

truncate -s $((ESP_MIB * mib)) "$work/esp.img"
mkfs.vfat -F 32 -s 1 -n "$ESP_LABEL" -i "$ESP_ID" "$work/esp.img" >/dev/null
touch --date="@$SOURCE_DATE_EPOCH" "$work/BOOTX64.EFI"
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT
mcopy -m -i "$work/esp.img" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI

MKE2FS_CONFIG=$here/mke2fs.conf mkfs.ext4 -q -F -t ext4 -d "$root" -L "$ROOT_LABEL" -U "$ROOT_UUID" \
  -E "hash_seed=$ROOT_HASH_SEED,lazy_itable_init=1,lazy_journal_init=1,nodiscard" \
  "$work/root.img" "${root_mib}M"

# --- the disk -----------------------------------------------------------------------------
truncate -s $((DISK_MIB * mib)) "$out/disk.raw"
sfdisk --quiet --no-reread --no-tell-kernel "$out/disk.raw" <<EOF
label: gpt
label-id: $DISK_GUID
unit: sectors
first-lba: 34

start=$((bios_start * 2048)), size=$((BIOS_MIB * 2048)), type=21686148-6449-6E6F-744E-656564454649, uuid=$BIOS_PARTUUID, name="bios"
start=$((esp_start * 2048)), size=$((ESP_MIB * 2048)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=$ESP_PARTUUID, name="esp"
start=$((root_start * 2048)), size=$((root_mib * 2048)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=$ROOT_PARTUUID, name="root"
EOF
dd if="$work/esp.img" of="$out/disk.raw" bs=1M seek="$esp_start" conv=notrunc,sparse status=none
dd if="$work/root.img" of="$out/disk.raw" bs=1M seek="$root_start" conv=notrunc,sparse status=none

used=$(du -sm "$root" | cut -f1)
echo "build-image.sh: $(wc -l < "$out/packages.txt") packages, ${used} MiB in the root tree, a ${root_mib} MiB root partition; disk.raw ready"
