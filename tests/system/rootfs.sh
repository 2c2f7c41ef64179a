#!/usr/bin/env bash
# Builds (or reuses) the Debian bookworm root file system that the system test boots with
# systemd-nspawn: systemd, Python and Synapse in /opt/synapse, a matrix-synapse user.
# Cached under $CACHE keyed by this file's hash; the cached tree is never modified (the test
# boots it with --volatile=overlay). Prints the rootfs path.
set -euo pipefail
SYNAPSE_VERSION=1.163.2
cache="${STA_NSPAWN_CACHE:-/var/cache/synapse-token-auth/nspawn}"
key="$(sha256sum "$0" | cut -c1-16)"
rootfs="$cache/rootfs-$key"
if [ -e "$rootfs/.complete" ]; then
  echo "$rootfs"
  exit 0
fi
mkdir -p "$cache/debs"
building="$cache/building-$key-$$"
trap 'umount -R "$building/proc" "$building/sys" "$building/dev" 2>/dev/null || true; rm -rf "$building"' EXIT

echo "building the system test rootfs in $building (about 2 minutes, once)" >&2
debootstrap --variant=minbase --cache-dir="$cache/debs" \
  --include=systemd,systemd-sysv,dbus,python3,python3-venv,ca-certificates,curl,procps \
  bookworm "$building" http://deb.debian.org/debian >&2 2>"$cache/debootstrap.log" || {
    tail -20 "$cache/debootstrap.log" >&2; exit 1; }

# pip inside the chroot must trust the same CA as the host (an HTTPS proxy may re-sign).
cp /usr/local/share/ca-certificates/*.crt "$building/usr/local/share/ca-certificates/" 2>/dev/null || true
cp /etc/resolv.conf "$building/etc/resolv.conf"
mount --bind /proc "$building/proc"
mount --bind /sys "$building/sys"
mount --bind /dev "$building/dev"
chroot "$building" update-ca-certificates >&2
chroot "$building" python3 -m venv /opt/synapse
chroot "$building" env -u PIP_FIND_LINKS /opt/synapse/bin/pip install -q "matrix-synapse==$SYNAPSE_VERSION" >&2
chroot "$building" useradd --system --user-group --home-dir /var/lib/matrix-synapse --create-home matrix-synapse
# Quiet and quick boots: nothing here needs these.
chroot "$building" systemctl mask systemd-resolved.service systemd-timesyncd.service \
  apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer 2>/dev/null || true
umount -R "$building/proc" "$building/sys" "$building/dev"
: > "$building/etc/machine-id"
touch "$building/.complete"
mv "$building" "$rootfs"
trap - EXIT
# Older trees of this cache are from previous versions of this script.
find "$cache" -maxdepth 1 -name 'rootfs-*' ! -name "rootfs-$key" -exec rm -rf {} + 2>/dev/null || true
echo "$rootfs"
