#!/usr/bin/env bash
# Builds the Python wheel (abi3, release) with maturin from a private tools venv and prints its
# path. Used by run-tests.sh and the demo.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${CARGO_TARGET_DIR:-$root/target}/python"
tools="$work/tools-venv"
mkdir -p "$work"
if [ ! -x "$tools/bin/maturin" ]; then
  python3 -m venv "$tools"
  "$tools/bin/pip" install -q "maturin>=1.7,<2"
fi
rm -rf "$work/wheels"
"$tools/bin/maturin" build --release --locked -m "$root/python-shim/Cargo.toml" -o "$work/wheels" >&2
ls "$work"/wheels/synapse_token_auth-*.whl
