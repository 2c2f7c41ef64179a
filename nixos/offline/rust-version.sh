#!/usr/bin/env bash
# Fails when a dependency in Cargo.lock declares a higher rust-version than this crate's
# Cargo.toml: the Nix packages build with the rustc of the user's nixpkgs, and an older one must
# be refused by cargo with "requires rustc X" for this crate, not deep inside a dependency.
# Reads `cargo metadata` (no build; uses the registry cache, fetching the index only if it lacks
# something).
set -euo pipefail
cd "$(dirname "$0")/../.."
offline=(--offline)
cargo metadata --format-version 1 --locked --offline >/dev/null 2>&1 || offline=()
metadata="$(mktemp)"
trap 'rm -f "$metadata"' EXIT
cargo metadata --format-version 1 --locked "${offline[@]}" >"$metadata"
python3 - "$metadata" <<'PY'
import json, sys

def version(text):
    parts = [int(part) for part in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))

with open(sys.argv[1], encoding="utf-8") as f:
    metadata = json.load(f)
members = set(metadata["workspace_members"])
ours = [p for p in metadata["packages"] if p["id"] in members and p.get("rust_version")]
theirs = [p for p in metadata["packages"] if p["id"] not in members and p.get("rust_version")]
failed = False
for crate in ours:
    needed = max(theirs, key=lambda p: version(p["rust_version"]))
    above = sorted(
        (p for p in theirs if version(p["rust_version"]) > version(crate["rust_version"])),
        key=lambda p: (version(p["rust_version"]), p["name"]),
        reverse=True,
    )
    if above:
        failed = True
        print(f"{crate['manifest_path']}: rust-version = \"{crate['rust_version']}\", but these dependencies need more:")
        for p in above:
            print(f"  {p['name']} {p['version']}: rust-version {p['rust_version']}")
        print(f"  set rust-version = \"{above[0]['rust_version']}\" (or pin older dependencies)")
    else:
        print(f"  {crate['name']}: rust-version {crate['rust_version']}; highest among {len(theirs)} dependencies: {needed['name']} {needed['version']} ({needed['rust_version']})")
sys.exit(1 if failed else 0)
PY
