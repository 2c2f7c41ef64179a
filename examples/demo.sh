#!/usr/bin/env bash
# `make demo`: builds the daemon/CLI and the Python wheel, installs the wheel with a pinned
# Synapse into a virtualenv, then runs examples/demo.py. Pass --check to stop after one login.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
venv="$target/python/demo-venv"

cargo build --release --locked --manifest-path "$root/Cargo.toml" --bin synapse-token-auth
wheel="$("$root/python-shim/build-wheel.sh")"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "matrix-synapse==1.163.2"
fi
"$venv/bin/pip" install -q --force-reinstall --no-deps "$wheel"
cd "$root/examples"
exec "$venv/bin/python" demo.py --bin "$target/release/synapse-token-auth" --dir "$target/demo" \
  --port "${DEMO_PORT:-8008}" "$@"
