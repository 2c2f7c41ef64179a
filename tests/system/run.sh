#!/usr/bin/env bash
# System test under a real systemd: builds the daemon and the wheel, builds or reuses the cached
# Debian rootfs, and runs scenario.py, which boots it with systemd-nspawn. Needs root,
# debootstrap and systemd-container (.ci/run installs them). Fails, never skips, when the
# container cannot be built or booted.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
here="$root/tests/system"
started=$(date +%s)

for tool in systemd-nspawn debootstrap nsenter; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is required (apt-get install systemd-container debootstrap)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "FAIL: the system test needs root (systemd-nspawn)" >&2; exit 1; }

cargo build --release --locked --manifest-path "$root/Cargo.toml" --bin synapse-token-auth
wheel="$("$root/python-shim/build-wheel.sh")"

t0=$(date +%s)
rootfs="$("$here/rootfs.sh")"
echo "rootfs ready in $(( $(date +%s) - t0 ))s: $rootfs"

artifacts="$(mktemp -d)"
trap 'rm -rf "$artifacts"' EXIT
install -m 0755 "$target/release/synapse-token-auth" "$artifacts/"
mkdir "$artifacts/wheel" "$artifacts/dist"
cp "$wheel" "$artifacts/wheel/"
cp "$root"/dist/systemd/synapse-token-auth.{socket,service} "$artifacts/dist/"
cp "$here/matrix-synapse.service" "$here/setup.sh" "$root/examples/homeserver_config.py" "$artifacts/"
python3 -c 'import secrets; print(secrets.token_urlsafe(48))' > "$artifacts/jwt-secret"
chmod -R a+rX "$artifacts"

t0=$(date +%s)
status=0
python3 "$here/scenario.py" "$rootfs" "$artifacts" || status=$?
echo "boot + scenario + poweroff: $(( $(date +%s) - t0 ))s; whole system test: $(( $(date +%s) - started ))s"
exit "$status"
