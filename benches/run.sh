#!/usr/bin/env bash
# `make bench`: every benchmark in one run, then results/report.md with PNG plots.
# Bounded to a few minutes on 2 cores. Needs oha (`cargo install --locked oha`), and for the
# scale-out step PostgreSQL's server programs and redis-server (Debian: postgresql,
# redis-server; they run in temporary directories, not as services) and systemd-socket-activate.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
out="${1:-$root/results}"
work="$target/bench"
mkdir -p "$work" "$out"
command -v oha >/dev/null || { echo "oha is required: cargo install --locked oha" >&2; exit 2; }

cargo build --release --locked --manifest-path "$root/Cargo.toml" --bin synapse-token-auth
bin="$target/release/synapse-token-auth"
wheel="$("$root/python-shim/build-wheel.sh")"
# Ours, the libraries and Synapse's built-in JWT login in one venv; the original module in its
# own (it uses the package name our compatibility shim provides).
ours="$work/venv-ours"; original="$work/venv-original"
[ -x "$ours/bin/python" ] || { python3 -m venv "$ours"; "$ours/bin/pip" install -q "matrix-synapse[jwt,redis]==1.163.2" \
  PyJWT authlib jwcrypto cryptography matplotlib "psycopg2-binary==2.9.11"; }
# Synapse with workers (scale-out step): Redis support and PostgreSQL's driver, also in a venv
# made before that step existed.
"$ours/bin/python" -c "import psycopg2, txredisapi" 2>/dev/null || "$ours/bin/pip" install -q \
  "matrix-synapse[jwt,redis]==1.163.2" "psycopg2-binary==2.9.11"
[ -x "$original/bin/python" ] || { python3 -m venv "$original"; "$original/bin/pip" install -q \
  "matrix-synapse==1.163.2" "synapse-token-authenticator==0.14.1"; }
"$ours/bin/pip" install -q --force-reinstall --no-deps "$wheel"

echo "== 1/6 criterion: Verifier::verify against jsonwebtoken::decode; JWKS-cached keys against PEM files"
cargo bench --locked --manifest-path "$root/Cargo.toml" --bench verify -- --noplot 2>&1 | grep -E "^(verify|published|oauth)/|time:" | paste - - | awk '{print $1, $5, $6}'
echo "== 2/6 from Python: ours, PyJWT, authlib, jwcrypto"
"$ours/bin/python" "$root/benches/python_verify.py" --keys "$root/tests/fixtures/keys" --json "$work/python.json"
echo "== 3/6 verifier daemon under load"
python3 "$root/benches/daemon_load.py" --bin "$bin" --json "$work/daemon.json"
echo "== 4/6 end-to-end logins through Synapse"
"$ours/bin/python" "$root/benches/e2e_login.py" --python-ours "$ours/bin/python" \
  --python-original "$original/bin/python" --bin "$bin" --round-trip --json "$work/e2e.json"
echo "== 5/6 keys from a real OpenID provider: the first login's fetch, an unknown-kid storm"
"$ours/bin/python" "$root/benches/idp_keys.py" --bin "$bin" --json "$work/idp_keys.json"
echo "== 6/6 scale-out: single-use tokens on SQLite and PostgreSQL, logins/s on one and two Synapse workers"
"$ours/bin/python" "$root/benches/scale_out.py" --bin "$bin" --json "$work/scale_out.json"
"$ours/bin/python" "$root/benches/report.py" --out "$out" --criterion "$target/criterion" \
  --python "$work/python.json" --daemon "$work/daemon.json" --e2e "$work/e2e.json" \
  --idp-keys "$work/idp_keys.json" --scale-out "$work/scale_out.json" \
  --synapse-version "$("$ours/bin/python" -c 'import synapse; print(synapse.__version__.split()[0])')"
