"""Token minting and paths shared by the tests (HS* by hand, RS256/ES256 with `cryptography`)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from matrix_client import b64url, hs_token, signing_input

REPO = Path(__file__).resolve().parents[2]
KEYS = REPO / "tests" / "fixtures" / "keys"
SECRET = "test-only-secret-0123456789abcdef0123456789abcdef0123456789abcdef"
SERVER_NAME = "test.local"


def claims(sub: str, **extra: Any) -> dict[str, Any]:
    return {"sub": sub, "exp": int(time.time()) + 3600, **extra}


def token(payload: dict[str, Any], secret: str = SECRET, alg: str = "HS512", header: dict | None = None) -> str:
    """A compact JWS: HS256/384/512 with `secret`, or RS256/ES256 with the fixture keys."""
    if alg.startswith("HS"):
        return hs_token(payload, secret, alg, header)
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

    message = signing_input(payload, alg, header)
    if alg == "RS256":
        key = serialization.load_pem_private_key((KEYS / "rsa.key").read_bytes(), None)
        signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "ES256":
        key = serialization.load_pem_private_key((KEYS / "p256.key").read_bytes(), None)
        der = key.sign(message, ec.ECDSA(hashes.SHA256()))
        r, s = utils.decode_dss_signature(der)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        raise ValueError(alg)
    return f"{message.decode()}.{b64url(signature)}"


def daemon_binary() -> str:
    """The verifier daemon built by cargo; its absence fails the tests that need it."""
    candidates = [os.environ.get("SYNAPSE_TOKEN_AUTH_BIN")]
    target = os.environ.get("CARGO_TARGET_DIR", str(REPO / "target"))
    candidates += [f"{target}/debug/synapse-token-auth", f"{target}/release/synapse-token-auth"]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    raise AssertionError("the synapse-token-auth binary is required: run `cargo build` or set SYNAPSE_TOKEN_AUTH_BIN")
