#!/usr/bin/env bash
# Builds the wheel, installs it into a fresh virtualenv with the pinned Synapse, and runs the
# Python tests (unit and end to end) against that installed copy: a file missing from the
# package fails here, as it would for a user.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
work="$target/python"
venv="$work/test-venv"
wheel="$("$root/python-shim/build-wheel.sh")"

rm -rf "$venv"
python3 -m venv "$venv"
# schemathesis: the daemon's API against docs/openapi.yaml (test_daemon_api.py). redis and
# psycopg2-binary: Synapse with workers on PostgreSQL (test_workers.py); the binary wheel needs
# no compiler or libpq headers, and Synapse only checks for its `redis` extra at run time.
"$venv/bin/pip" install -q "$wheel" "matrix-synapse[jwt,redis]==1.163.2" "pytest>=8" cryptography \
  "schemathesis==4.32.5" "psycopg2-binary==2.9.11"

# The daemon binary for daemon-mode tests: built by `cargo test` (make test-rust) or here.
if [ -z "${SYNAPSE_TOKEN_AUTH_BIN:-}" ]; then
  cargo build --locked --manifest-path "$root/Cargo.toml" --bin synapse-token-auth
  export SYNAPSE_TOKEN_AUTH_BIN="$target/debug/synapse-token-auth"
fi
export SYNAPSE_TOKEN_AUTH_WHEEL="$wheel"
cd "$root/python-shim"
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
