#!/usr/bin/env bash
# The Nix checks that run offline (CI runs them through `make test-nix`):
#   1. every .nix file parses            (nix-instantiate --parse)
#   2. no dead code                      (deadnix --fail)
#   3. formatted                         (nixpkgs-fmt --check; nixfmt, the flake's formatter, is
#                                         not installable here)
#   4. Cargo.toml's rust-version is at least every dependency's (the packages build with the
#      rustc of the user's nixpkgs)
#   5. the generated unit files verify   (systemd-analyze verify on nixos/offline/units/, with
#                                         dist/systemd: no ordering cycle, no unknown setting)
# With a copy of nixpkgs' lib (NIXPKGS_LIB; for example a checkout of nix-community/nixpkgs.lib,
# which no package registry carries):
#   6. the module evaluates to the units and Synapse settings we expect, imported on its own
#      with a read-only package set (nixos/offline/eval.nix), and the README's NixOS example
#      evaluates as pasted, with a database Synapse can use (nixos/offline/readme.nix)
#   7. nixos/offline/units/ is what the module and the VM tests' nodes generate today
#      (nixos/offline/units.nix; `check.sh --update` rewrites it)
#   8. the flake's outputs evaluate      (nix flake show / check --no-build, nixpkgs replaced by
#      the stand-in nixos/offline/stand-in.nix, whose runNixOSTest evaluates every node of every
#      VM test as runNixOSTest does: read-only package set, assertions)
# Without it, steps 6-8 print NOT RUN, loudly, and only steps 1-5 count.
# Building the packages and the NixOS VM tests need nixpkgs and a binary cache: not here.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
tools="${NIX_TOOLS_BIN:-/var/cache/synapse-token-auth/tools/bin}"
export PATH="$tools:$PATH"
nix_files=(flake.nix nixos/*.nix nixos/tests/*.nix nixos/offline/*.nix)
units_dir=nixos/offline/units
lib="${NIXPKGS_LIB:-/var/cache/synapse-token-auth/nixpkgs-lib}"
have_lib=0
[ -f "$lib/lib/default.nix" ] && have_lib=1
nix_quiet() { "$@" 2> >(grep -v "group 'nixbld' specified in 'build-users-group' does not exist" >&2); }

generate_units() {
  local out="$1"
  nix_quiet nix-instantiate --eval --strict --json nixos/offline/units.nix --arg lib "import $lib/lib" |
    python3 nixos/offline/write-units.py "$out"
}

if [ "${1:-}" = --update ]; then
  [ "$have_lib" = 1 ] || { echo "--update needs nixpkgs' lib at $lib (set NIXPKGS_LIB)" >&2; exit 1; }
  rm -rf "$units_dir"
  generate_units "$units_dir"
  echo "rewrote $units_dir"
  exit 0
fi

echo "1. parse: ${#nix_files[@]} files"
for f in "${nix_files[@]}"; do nix_quiet nix-instantiate --parse "$f" >/dev/null; done
echo "   OK"
echo "2. deadnix --fail"
deadnix --fail "${nix_files[@]}"
echo "   OK"
echo "3. nixpkgs-fmt --check"
nixpkgs-fmt --check "${nix_files[@]}"
echo "   OK"
echo "4. rust-version covers the dependencies"
./nixos/offline/rust-version.sh
echo "   OK"
echo "5. systemd-analyze verify: the generated units with the packaged ones"
# The packaged units as a non-NixOS system installs them, with the drop-in for a fetched key set.
packaged="$(mktemp -d)"
cp -r dist/systemd/. "$packaged/"
SELFTEST=1 ./nixos/offline/verify-units.sh "$units_dir"/*/ "$packaged/"
rm -rf "$packaged"
echo "   OK"

if [ "$have_lib" != 1 ]; then
  echo "NOT RUN: steps 6-8 (module evaluation, generated units up to date, flake outputs and VM test nodes): no copy of nixpkgs' lib at $lib (set NIXPKGS_LIB)"
  echo "nix checks: steps 1-5 OK; steps 6-8 NOT RUN"
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "6. module evaluation with nixpkgs lib $(nix_quiet nix-instantiate --eval --expr "(import $lib/lib).version" | tr -d '"')"
nix_quiet nix-instantiate --eval --strict nixos/offline/eval.nix --arg lib "import $lib/lib"
# The README's NixOS example (the first ```nix block of its NixOS section), as pasted.
awk '/^## NixOS/ { section = 1 } section && /^```nix/ { code = 1; next } code && /^```/ { exit } code' \
  README.md >"$work/readme-example.nix"
nix_quiet nix-instantiate --eval --strict nixos/offline/readme.nix --arg lib "import $lib/lib" \
  --arg example "$work/readme-example.nix"
echo "   OK"

echo "7. $units_dir is what the configurations generate"
generate_units "$work/units"
if ! diff -r --no-dereference "$units_dir" "$work/units"; then
  echo "FAILED: $units_dir differs from what nixos/offline/units.nix generates (above: < checked in, > generated)."
  echo "If the change is intended: nixos/offline/check.sh --update, then step 5 verifies the new units."
  exit 1
fi
echo "   OK: $(find "$units_dir" -type f -o -type l | wc -l) files in $(find "$units_dir" -mindepth 1 -maxdepth 1 -type d | wc -l) configurations"

echo "8. flake outputs with a stand-in nixpkgs (runNixOSTest evaluates the VM tests' nodes)"
mkdir "$work/nixpkgs"
cp nixos/offline/stub-nixpkgs.nix "$work/nixpkgs/flake.nix"
cp nixos/offline/stand-in.nix nixos/offline/nixos.nix "$work/nixpkgs/"
cp -r "$lib/lib" "$work/nixpkgs/lib"
flake=(--extra-experimental-features 'nix-command flakes' --option substituters ''
       --override-input nixpkgs "path:$work/nixpkgs" --no-write-lock-file)
nix_quiet nix flake show "${flake[@]}" "path:$root"
nix_quiet nix flake check "${flake[@]}" --no-build "path:$root"
echo "   OK"
echo "nix checks: OK"
