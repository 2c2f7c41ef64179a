#!/usr/bin/env bash
# systemd-analyze verify on the unit files NixOS generates for this project, together with the
# packaged units (dist/systemd), as systemd would load them at boot.
#
#   nixos/offline/verify-units.sh DIR...
#
# Each DIR is one configuration's /etc/systemd/system as NixOS generates it (nixos/offline/units/
# holds them, checked in; nixos/offline/units.nix produces them): unit files, <unit>.d/
# overrides.conf drop-ins, <target>.wants/ and .requires/ links, and links to the units of
# systemd.packages (/nix/store/...-synapse-token-auth-.../lib/systemd/system/<unit>, taken here
# from dist/systemd, which is what package.nix installs there). Each is verified in its own
# root (--root) whose /usr/lib/systemd/system is this machine's, with the standard targets
# (sockets.target, basic.target, multi-user.target, ...), so ordering cycles through them are found.
# Every executable a unit names is replaced by a stub in that root: the store paths do not exist
# here, and what is checked is the units, not the programs (the nspawn system test runs those).
#
# Fails on any message from systemd-analyze: an ordering cycle (systemd would delete a start
# job to break it, silently at boot), an unknown setting, a bad value, a missing unit.
# SELFTEST=1 also checks that a known cycle is found, so that a quiet run means something.
set -euo pipefail
root_dir="$(cd "$(dirname "$0")/../.." && pwd)"
system_units=/usr/lib/systemd/system
[ -d "$system_units" ] || system_units=/lib/systemd/system
command -v systemd-analyze >/dev/null || {
  echo "verify-units: systemd-analyze not found (Debian package systemd)" >&2
  exit 1
}

# verify DIR [EXTRA_UNIT_TEXT]: prints systemd-analyze's messages; status 1 if there are any.
verify() {
  local dir="$1" extra="${2:-}" root units out rc=0
  root="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$root'" RETURN
  mkdir -p "$root/etc/systemd/system" "$root/usr/lib/systemd"
  cp -a "$system_units" "$root/usr/lib/systemd/system"
  cp -a "$dir/." "$root/etc/systemd/system/"
  local etc="$root/etc/systemd/system"
  # Links into the store: the packaged units, as package.nix installs them.
  while IFS= read -r -d '' link; do
    local target name
    target="$(readlink "$link")"
    case "$target" in
      /nix/store/*/lib/systemd/system/*)
        name="${target##*/}"
        if [ ! -f "$root_dir/dist/systemd/$name" ]; then
          echo "$dir: ${link#"$etc"/} links to $target, but dist/systemd has no $name"
          return 1
        fi
        rm "$link"
        cp "$root_dir/dist/systemd/$name" "$link"
        ;;
      /*)
        echo "$dir: ${link#"$etc"/} links to $target, which is not a packaged unit"
        return 1
        ;;
    esac
  done < <(find "$etc" -type l -print0)
  if [ -n "$extra" ]; then
    mkdir -p "$etc/selftest.service.d"
    printf '%s\n' "$extra" >"$etc/selftest.service.d/selftest.conf"
  fi
  # Stub every absolute executable named by an Exec*= line (after systemd's prefixes -@:+!).
  while IFS= read -r exe; do
    mkdir -p "$root$(dirname "$exe")"
    [ -e "$root$exe" ] || printf '#!/bin/sh\n' >"$root$exe"
    chmod +x "$root$exe"
  done < <(find "$etc" -type f -exec sed -n 's/^Exec[A-Za-z]*=[-@:+!]*\(\/[^ ]*\).*/\1/p' {} + | sort -u)

  # The configuration's own units (not drop-ins, links or directories) and the boot target.
  mapfile -t units < <(cd "$etc" && find . -maxdepth 1 -type f -printf '%f\n' | sort)
  out="$(systemd-analyze verify --root="$root" "${units[@]}" multi-user.target 2>&1)" || rc=$?
  if [ -n "$out" ] || [ "$rc" -ne 0 ]; then
    printf '%s\n' "$out" | sed "s|$root||g"
    return 1
  fi
}

if [ "${SELFTEST:-0}" = 1 ]; then
  # A service ordered before a socket that sockets.target wants: the cycle of a secret-making
  # service written Before=/RequiredBy= the socket. systemd-analyze must report it.
  selftest="$(mktemp -d)"
  trap 'rm -rf "$selftest"' EXIT
  mkdir -p "$selftest/sockets.target.wants" "$selftest/selftest.socket.requires"
  printf '[Socket]\nListenStream=/run/selftest.sock\n' >"$selftest/selftest.socket"
  printf '[Service]\nType=oneshot\nExecStart=/bin/true\n' >"$selftest/selftest.service"
  ln -s ../selftest.socket "$selftest/sockets.target.wants/selftest.socket"
  ln -s ../selftest.service "$selftest/selftest.socket.requires/selftest.service"
  if out="$(verify "$selftest" '[Unit]
Before=selftest.socket')"; then
    echo "verify-units: a known ordering cycle was not reported; the check would not see one" >&2
    exit 1
  fi
  grep -q "ordering cycle" <<<"$out" || {
    printf 'verify-units: the known cycle gave an unexpected message:\n%s\n' "$out" >&2
    exit 1
  }
  echo "  self-test: a known ordering cycle is reported ($(grep -c 'ordering cycle' <<<"$out") messages)"
fi

[ $# -gt 0 ] || {
  echo "verify-units: no unit directory given" >&2
  exit 1
}
failed=0
for dir in "$@"; do
  if out="$(verify "$dir")"; then
    echo "  ${dir#"$root_dir"/}: $(find "$dir" -maxdepth 1 -type f | wc -l) units, $(find "$dir" -name '*.conf' | wc -l) drop-ins, $(find "$dir" -type l | wc -l) links: no messages"
  else
    echo "FAILED: systemd-analyze verify on ${dir#"$root_dir"/} (with dist/systemd):"
    printf '%s\n' "$out" | sed 's/^/  /'
    failed=1
  fi
done
exit "$failed"
