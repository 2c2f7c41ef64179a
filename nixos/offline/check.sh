#!/usr/bin/env bash
# The Nix checks that run offline (CI runs them through `make test-nix`):
#   1. every .nix file parses            (nix-instantiate --parse)
#   2. no dead code                      (deadnix --fail)
#   3. formatted                         (nixpkgs-fmt --check)
#   4. the module evaluates to the units and Synapse settings we expect
#      (nixos/offline/eval.nix with nixpkgs' real lib)
#   5. the flake's outputs evaluate      (nix flake show / check --no-build, nixpkgs replaced by
#      nixos/offline/stub-nixpkgs.nix around nixpkgs' real lib)
# Building the packages and the NixOS VM tests need nixpkgs and a binary cache: not here.
# NIXPKGS_LIB: a copy of nixpkgs' lib/ parent directory (for example a checkout of
# nix-community/nixpkgs.lib; no package registry carries it). Without it, steps 4 and 5 print
# NOT RUN, loudly, and only steps 1-3 count.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
tools="${NIX_TOOLS_BIN:-/var/cache/synapse-token-auth/tools/bin}"
export PATH="$tools:$PATH"
nix_files=(flake.nix nixos/*.nix nixos/tests/*.nix nixos/offline/*.nix)

echo "1. parse: ${#nix_files[@]} files"
for f in "${nix_files[@]}"; do nix-instantiate --parse "$f" >/dev/null; done
echo "2. deadnix --fail"
deadnix --fail "${nix_files[@]}"
echo "3. nixpkgs-fmt --check"
nixpkgs-fmt --check "${nix_files[@]}"

lib="${NIXPKGS_LIB:-/var/cache/synapse-token-auth/nixpkgs-lib}"
if [ ! -f "$lib/lib/default.nix" ]; then
  echo "NOT RUN: steps 4-5 (module evaluation, flake outputs): no copy of nixpkgs' lib at $lib (set NIXPKGS_LIB)"
  echo "nix checks: steps 1-3 OK; steps 4-5 NOT RUN"
  exit 0
fi
echo "4. module evaluation with nixpkgs lib $(nix-instantiate --eval --expr "(import $lib/lib).version" | tr -d '"')"
nix-instantiate --eval --strict nixos/offline/eval.nix --arg lib "import $lib/lib"

echo "5. flake outputs with a stand-in nixpkgs"
stub="$(mktemp -d)"
trap 'rm -rf "$stub"' EXIT
cp nixos/offline/stub-nixpkgs.nix "$stub/flake.nix"
cp -r "$lib/lib" "$stub/lib"
flake=(--extra-experimental-features 'nix-command flakes' --option substituters ''
       --override-input nixpkgs "path:$stub" --no-write-lock-file)
nix flake show "${flake[@]}" "path:$root"
nix flake check "${flake[@]}" --no-build "path:$root"
echo "nix checks: OK"
