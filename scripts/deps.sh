#!/usr/bin/env bash
# Installs every Debian package that building cairn, `make demo` and `make test` need.
# Run as root (or with sudo) on Debian 12 or later. Go itself (see go.mod) is expected on PATH.
set -euo pipefail

packages=(
  ca-certificates git make gcc libc6-dev   # build; the race detector needs cgo
  openssh-client                           # ssh-keygen, used by tests that make keys
  skopeo                                   # second, independent registry client in the airgap tests
  docker-registry                          # distribution 2.8, the anchor of bench/registry
  mmdebstrap squashfs-tools                # the appliance base (make appliance-base)
  xorriso isolinux syslinux-common         # ISO mastering, BIOS boot (build/iso)
  grub-efi-amd64-bin grub-common dosfstools mtools  # UEFI boot: GRUB and its EFI partition image
  qemu-system-x86 ovmf                     # the VM tier (make vmtest): TCG, SeaBIOS and OVMF
  qemu-utils kmod                          # qemu-img makes the qcow2 images of the build tests; depmod checks the agent's module order
  e2fsprogs util-linux fdisk mount         # the appliance's data disk: mkfs.ext4, wipefs, sfdisk, loop mounts in tests
  chromium                                 # the status page test renders the page in a real browser
  curl tftp-hpa atftp                      # independent TFTP clients in the daemon/tftp tests; curl is also in bench/imagewrite's anchor
  dnsmasq-base                             # dnsmasq's TFTP server, the anchor of bench/tftp (the binary, no service)
  zstd qemu-utils                          # the example host image (make host-image; mmdebstrap, mtools, fdisk as above): zstd, and qcow2 overlays in its boot test; zstd is also in bench/imagewrite's anchor
  debian-archive-keyring                   # trixie's signing keys too: quadlet below comes from trixie
  kea-admin                                # Kea's perfdhcp, the load of bench/dhcp (dnsmasq-base is its anchor and the DHCP server daemon/dhcp's proxy-mode test runs beside)
)

if [ "$(id -u)" -ne 0 ]; then
  exec sudo "$0" "$@"
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null

# quadlet, podman 5's unit generator, which the agent/quadlet tests run: hosts run Debian 13
# (trixie) and its podman 5.4, while Debian 12's podman 4.3 has no quadlet. Take the binary out
# of trixie's podman package, which apt fetches from the signed trixie index into a private state
# directory, so that this machine's sources and packages stay as they are (apt checks the index's
# signature and the package's sha256). It is a Go program that needs nothing but glibc 2.34.
quadlet=/usr/local/libexec/cairn/quadlet
if ! "$quadlet" -version >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/parts" "$tmp/deb"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" >"$tmp/trixie.list"
  apt_trixie=(-o "Dir::Etc::SourceList=$tmp/trixie.list" -o "Dir::Etc::SourceParts=$tmp/parts"
    -o "Dir::Etc::Preferences=$tmp/none" -o "Dir::Etc::PreferencesParts=$tmp/parts"
    -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache"
    -o Acquire::Languages=none -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
    -o APT::Sandbox::User=root)
  apt-get "${apt_trixie[@]}" update -qq
  (cd "$tmp/deb" && apt-get "${apt_trixie[@]}" download -qq podman)
  dpkg-deb --fsys-tarfile "$tmp"/deb/podman_*.deb | tar -x -C "$tmp/deb" ./usr/libexec/podman/quadlet
  install -D -m 0755 "$tmp/deb/usr/libexec/podman/quadlet" "$quadlet"
  rm -rf "$tmp"
  trap - EXIT
fi
echo "deps.sh: quadlet $("$quadlet" -version) at $quadlet"

want=$(awk '/^go /{print $2}' "$(dirname "$0")/../go.mod")
if ! command -v go >/dev/null; then
  echo "deps.sh: Go $want is needed on PATH (https://go.dev/dl); Debian's golang package is too old" >&2
  exit 1
fi
echo "deps.sh: packages installed; $(go version)"
