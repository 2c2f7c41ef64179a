#!/usr/bin/env bash
# Makes sure the private tools venv (maturin, ruff) exists and prints its bin directory.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="${CARGO_TARGET_DIR:-$root/target}/python/tools-venv"
if [ ! -x "$tools/bin/maturin" ] || [ ! -x "$tools/bin/ruff" ]; then
  mkdir -p "$(dirname "$tools")"
  python3 -m venv "$tools"
  "$tools/bin/pip" install -q "maturin>=1.7,<2" "ruff>=0.6"
fi
echo "$tools/bin"
