#!/usr/bin/env python3
"""Cost of verifying one token from Python: our extension (synapse_token_auth._native) beside
PyJWT, authlib (what Synapse's built-in JWT login uses) and jwcrypto (what the original module
uses), on the same tokens, interleaved round by round so that machine noise hits all alike.

Each library is called the way a careful caller would: keys parsed once, signature, algorithm
allow-list and `exp` checked. Ours also checks the subject against the login user and every
other policy rule; the others do less work per call.

    python_verify.py --keys tests/fixtures/keys [--rounds 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

SECRET = "bench-only-secret-0123456789abcdef0123456789abcdef0123456789abcdef"
ALGORITHMS = ["HS256", "HS512", "RS256", "ES256", "EdDSA"]
KEYS = {"RS256": ("rsa.key", "rsa.pub"), "ES256": ("p256.key", "p256.pub"), "EdDSA": ("ed25519.key", "ed25519.pub")}


def make_cases(keys: Path, pad: int = 0):
    import warnings

    warnings.filterwarnings("ignore", message="authlib.jose module is deprecated")
    import jwt as pyjwt
    from authlib.jose import JsonWebKey, JsonWebToken
    from cryptography.hazmat.primitives import serialization
    from jwcrypto import jwk as jwcrypto_jwk
    from jwcrypto import jwt as jwcrypto_jwt
    from jwcrypto.common import base64url_encode
    from synapse_token_auth import _native

    cases = {}
    for alg in ALGORITHMS:
        claims = {"sub": "alice", "exp": int(time.time()) + 3600, "iat": int(time.time())}
        if pad:
            claims["pad"] = "x" * pad
        if alg.startswith("HS"):
            signing = verify_key = SECRET.encode()
            config = {"secret": SECRET, "algorithm": alg}
            authlib_key = SECRET.encode()
            jwc_key = jwcrypto_jwk.JWK(kty="oct", k=base64url_encode(SECRET.encode()))
        else:
            private, public = (keys / KEYS[alg][0]).read_bytes(), (keys / KEYS[alg][1]).read_bytes()
            signing = serialization.load_pem_private_key(private, None)
            verify_key = serialization.load_pem_public_key(public)
            config = {"keyfile": str(keys / KEYS[alg][1]), "algorithm": alg}
            authlib_key = JsonWebKey.import_key(public, {"kty": {"RS256": "RSA", "ES256": "EC", "EdDSA": "OKP"}[alg]})
            jwc_key = jwcrypto_jwk.JWK.from_pem(public)
        token = pyjwt.encode(claims, signing, algorithm=alg)
        ours = _native.Verifier(json.dumps(config))
        authlib_jwt = JsonWebToken([alg])

        def verify_ours(t=token, v=ours):
            r = v.verify(t, "alice", "example.org")
            assert r["result"] == "accepted", r

        def verify_pyjwt(t=token, k=verify_key, a=alg):
            pyjwt.decode(t, k, algorithms=[a], options={"require": ["exp"]})

        def verify_authlib(t=token, k=authlib_key, j=authlib_jwt):
            claims = j.decode(t, k)
            claims.validate()

        def verify_jwcrypto(t=token, k=jwc_key, a=alg):
            jwcrypto_jwt.JWT(jwt=t, key=k, algs=[a], check_claims={"exp": None})

        fns = {
            "synapse-token-auth (pyo3)": verify_ours,
            "PyJWT": verify_pyjwt,
            "authlib": verify_authlib,
            "jwcrypto": verify_jwcrypto,
        }
        for fn in fns.values():
            fn()  # every library accepts the token before it is timed
        cases[alg] = (fns, len(token))
    return cases


def time_per_call(fn, budget: float) -> float:
    """Seconds per call, from as many calls as fit in `budget` seconds (at least 20)."""
    n, start = 0, time.perf_counter()
    while True:
        for _ in range(20):
            fn()
        n += 20
        elapsed = time.perf_counter() - start
        if elapsed >= budget:
            return elapsed / n


def measure(cases, rounds: int, budget: float) -> dict:
    samples: dict = {alg: {name: [] for name in fns} for alg, (fns, _) in cases.items()}
    for _ in range(rounds):
        for alg, (fns, _) in cases.items():
            order = list(fns.items())
            random.shuffle(order)
            for name, fn in order:
                samples[alg][name].append(time_per_call(fn, budget) * 1e6)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--budget", type=float, default=0.12, help="seconds per library per round")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from importlib.metadata import version

    versions = {
        "PyJWT": version("PyJWT"),
        "authlib": version("authlib"),
        "jwcrypto": version("jwcrypto"),
        "python": sys.version.split()[0],
    }
    samples = measure(make_cases(args.keys), args.rounds, args.budget)
    print(f"µs per verification, median of {args.rounds} interleaved rounds (min-max)")
    for alg, by_lib in samples.items():
        fastest_other = min(statistics.median(v) for k, v in by_lib.items() if not k.startswith("synapse"))
        for name, values in by_lib.items():
            med = statistics.median(values)
            print(
                f"  {alg:<6} {name:<28} {med:9.2f}  ({min(values):.2f}-{max(values):.2f})  "
                f"{fastest_other / med:5.1f}x vs fastest alternative"
                if name.startswith("synapse")
                else f"  {alg:<6} {name:<28} {med:9.2f}  ({min(values):.2f}-{max(values):.2f})"
            )

    # Scaling with token size (HS512): ours and the fastest Python library.
    sizes = [0, 512, 1024, 2048, 4096, 5600]  # the largest stays under the 8 KiB token limit
    scaling = []
    for pad in sizes:
        cases = make_cases(args.keys, pad)
        fns, length = cases["HS512"]
        subset = {"HS512": ({k: fns[k] for k in ("synapse-token-auth (pyo3)", "PyJWT")}, length)}
        s = measure(subset, max(3, args.rounds // 2), args.budget / 2)["HS512"]
        scaling.append({"token_bytes": length, **{k: statistics.median(v) for k, v in s.items()}})
        print(
            f"  HS512 token of {length:>5} bytes: ours {scaling[-1]['synapse-token-auth (pyo3)']:.2f} µs, "
            f"PyJWT {scaling[-1]['PyJWT']:.2f} µs"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"versions": versions, "rounds": args.rounds, "samples": samples, "scaling": scaling}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
