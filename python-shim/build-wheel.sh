#!/usr/bin/env bash
# Builds the Python wheel (abi3, release) with maturin from the private tools venv and prints
# its path. Used by run-tests.sh and the demo.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${CARGO_TARGET_DIR:-$root/target}/python"
tools="$("$root/python-shim/tools.sh")"
rm -rf "$work/wheels"
"$tools/maturin" build --release --locked -m "$root/python-shim/Cargo.toml" -o "$work/wheels" >&2
ls "$work"/wheels/synapse_token_auth-*.whl
