#!/usr/bin/env bash
# Load benchmark of the verifier daemon over a unix socket (and TCP): requests/s and latency
# percentiles from oha, and the daemon's RSS before and after. Bounded: DURATION per run.
#
#   benches/daemon-load.sh [DURATION]      (default 10s; needs `cargo install oha`)
#
# Target (read off the output, not asserted): one worker >= 60 000 verifications/s over a unix
# socket, RSS under 16 MiB after the load.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
duration="${1:-10s}"
command -v oha >/dev/null || { echo "oha is required: cargo install --locked oha" >&2; exit 2; }
cargo build --release --locked --manifest-path "$root/Cargo.toml" --bin synapse-token-auth >&2
bin="$target/release/synapse-token-auth"

work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
secret="bench-only-secret-0123456789abcdef0123456789abcdef0123456789abcdef"
port=$((20000 + RANDOM % 10000))

run_daemon() {  # $1 = workers
  cat > "$work/config.toml" <<TOML
secret = "$secret"
[server]
listen = ["unix:$work/v.sock", "tcp:127.0.0.1:$port"]
workers = $1
TOML
  RUST_LOG=warn "$bin" -c "$work/config.toml" serve 2>"$work/daemon.log" &
  pid=$!
  for _ in $(seq 100); do [ -S "$work/v.sock" ] && break; sleep 0.05; done
}

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }

load() {  # $1 = label, $2 = body, then oha target args
  local label="$1" body="$2"; shift 2
  oha --no-tui --output-format json -z "$duration" -c 32 -m POST \
    -H 'Content-Type: application/json' -d "$body" "$@" > "$work/out.json"
  python3 - "$label" "$work/out.json" <<'PY'
import json, sys
label, path = sys.argv[1], sys.argv[2]
r = json.load(open(path))
s, p = r["summary"], r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
print(f"{label:<34} {s['requestsPerSec']:>10.0f} req/s   p50 {p['p50']*1e3:6.3f} ms   p99 {p['p99']*1e3:6.3f} ms   status {codes}")
PY
}

good="$("$bin" -c /dev/stdin mint --sub alice --expires-in 1h <<<"secret = \"$secret\"")"
bad="${good%?}A"; [ "$bad" != "$good" ] || bad="${good%?}B"
body() { printf '{"token":"%s","user":"alice","server_name":"example.org"}' "$1"; }

echo "machine: $(nproc) cores, $(uname -r); oha $(oha --version | awk '{print $2}'); duration $duration per run"
for workers in 1 2; do
  run_daemon "$workers"
  before="$(rss_kib)"
  load "unix, $workers worker(s), accepted" "$(body "$good")" --unix-socket "$work/v.sock" http://localhost/v1/verify
  load "unix, $workers worker(s), rejected" "$(body "$bad")" --unix-socket "$work/v.sock" http://localhost/v1/verify
  load "tcp,  $workers worker(s), accepted" "$(body "$good")" "http://127.0.0.1:$port/v1/verify"
  after="$(rss_kib)"
  echo "RSS with $workers worker(s): ${before} KiB before, ${after} KiB after the load"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -f "$work/v.sock"
done
