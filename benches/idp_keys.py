#!/usr/bin/env python3
"""Keys from a real OpenID provider (tests/idp, oidc-provider) through a real Synapse, embedded
and daemon mode: what the first login pays for its fetch (discovery and key set) beside the
logins that use the cache, and how many key-set fetches a storm of logins with an unknown `kid`
costs.

    idp_keys.py --bin DAEMON [--logins 50] [--storm 100] [--json out.json]

Runs in a venv with Synapse and `cryptography` (the one `make bench` builds), from the checkout.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

root = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(root / "python-shim" / "tests"))
sys.path.insert(0, str(root / "examples"))
import helpers  # noqa: E402
from homeserver import Daemon, Homeserver  # noqa: E402
from idp import IdP, new_key  # noqa: E402

COOLDOWN = 2


def policy(issuer: str) -> dict:
    return {
        "oidc_issuer": issuer,
        "audiences": ["matrix"],
        "algorithm": ["RS256", "ES256"],
        "allow_registration": True,
        "jwks_refetch_cooldown_seconds": COOLDOWN,
    }


def awake(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(10)
        conn.connect(str(path))
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: verifier\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := conn.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 "), answer


def run(mode: str, directory: Path, logins: int, storm: int) -> dict:
    idp = IdP([new_key("ES256", "ec-1")], users={f"u{i}": {} for i in range(logins + 2)})
    daemon = None
    try:
        settings = policy(idp.issuer)
        if mode == "daemon":
            toml = "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items()) + "[server]\nworkers = 1\n"
            daemon = Daemon(directory, toml)
            daemon.start()
            # Socket activation starts the daemon on its first connection: start it now, so that
            # the first login times the key fetch, not the daemon's start.
            awake(daemon.socket)
            module_config = {"verifier": {"socket": str(daemon.socket), "timeout_seconds": 10}}
        else:
            module_config = settings
        hs = Homeserver(directory, module_config)
        hs.start()
        try:
            # Tokens first, so that the provider's own work is not timed.
            tokens = [(f"u{i}", idp.user_token(f"u{i}", "urn:matrix:jwt:ES256")) for i in range(logins + 1)]
            for user, _ in tokens:  # accounts exist: registration is not timed either
                hs.register_with_shared_secret(user, admin=False)
            t0 = time.perf_counter()
            status, body = hs.login(*tokens[0])
            first = time.perf_counter() - t0
            assert status == 200, body
            cached = []
            for user, tok in tokens[1:]:
                t0 = time.perf_counter()
                status, body = hs.login(user, tok)
                cached.append(time.perf_counter() - t0)
                assert status == 200, body
            # The storm: a kid published only after the last fetch, within one cooldown.
            idp.set_keys([new_key("ES256", "ec-storm"), new_key("ES256", "ec-1")])
            storm_token = idp.user_token("u0", "urn:matrix:jwt:ES256")
            idp.set_keys([new_key("ES256", "ec-1")])
            time.sleep(COOLDOWN + 1.1)  # the first login's fetch is a whole cooldown ago
            before = idp.requests("/jwks")
            started = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
                statuses = list(pool.map(lambda _: hs.login("u0", storm_token)[0], range(storm)))
            storm_seconds = time.perf_counter() - started
            fetches = idp.requests("/jwks") - before
        finally:
            hs.stop()
    finally:
        if daemon:
            daemon.stop()
        idp.stop()
    return {
        "mode": mode,
        "first_login_ms": first * 1000,
        "cached_login_p50_ms": statistics.median(cached) * 1000,
        "first_login_extra_ms": (first - statistics.median(cached)) * 1000,
        "storm_logins": storm,
        "storm_refused": statuses.count(403),
        "storm_seconds": storm_seconds,
        "storm_key_set_fetches": fetches,
        "cooldown_seconds": COOLDOWN,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True, help="the synapse-token-auth daemon binary")
    parser.add_argument("--logins", type=int, default=50)
    parser.add_argument("--storm", type=int, default=100)
    parser.add_argument("--json")
    args = parser.parse_args()
    import os

    os.environ["SYNAPSE_TOKEN_AUTH_BIN"] = args.bin
    assert helpers.daemon_binary() == args.bin
    results = []
    for mode in ("embedded", "daemon"):
        with tempfile.TemporaryDirectory(prefix=f"idp-bench-{mode}-") as directory:
            result = run(mode, Path(directory), args.logins, args.storm)
        results.append(result)
        print(
            f"{mode:9} first login {result['first_login_ms']:.1f} ms, cached p50 {result['cached_login_p50_ms']:.1f} ms "
            f"(fetch adds {result['first_login_extra_ms']:.1f} ms); storm: {result['storm_logins']} logins with an "
            f"unknown kid in {result['storm_seconds']:.2f} s, {result['storm_refused']} refused, "
            f"{result['storm_key_set_fetches']} key-set fetch(es) (cooldown {COOLDOWN} s)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
