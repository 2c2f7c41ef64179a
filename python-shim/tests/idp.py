"""A real OpenID provider for the tests: node-oidc-provider (tests/idp/idp.mjs) on 127.0.0.1.

It issues real JWT access tokens for a user (OpenID CIBA, poll mode, approved at once), publishes
its keys at ``jwks_uri`` through discovery, rotates keys while it runs, and can be made to fail
(500, garbage, slow, hang, any body). ``tests/idp/node_modules`` must be installed (``npm ci`` in
``tests/idp``; ``.ci/run`` does it): without it the tests that need the provider fail.
"""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

ROOT = Path(__file__).resolve().parents[2]
IDP_DIR = ROOT / "tests" / "idp"
CIBA = "urn:openid:params:grant-type:ciba"
CLIENT = ("svc", "svc-secret")
RESOURCE_SERVER = ("matrix-rs", "rs-secret")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def new_key(alg: str, kid: str) -> dict[str, Any]:
    """A private JWK (with kid, alg, use) for the provider's keystore."""
    if alg == "RS256":
        key = rsa.generate_private_key(65537, 2048)
        n = key.private_numbers()
        jwk = {
            "kty": "RSA",
            "n": _int(n.public_numbers.n),
            "e": _int(n.public_numbers.e),
            "d": _int(n.d),
            "p": _int(n.p),
            "q": _int(n.q),
            "dp": _int(n.dmp1),
            "dq": _int(n.dmq1),
            "qi": _int(n.iqmp),
        }
    elif alg == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
        n = key.private_numbers()
        jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64(n.public_numbers.x.to_bytes(32, "big")),
            "y": _b64(n.public_numbers.y.to_bytes(32, "big")),
            "d": _b64(n.private_value.to_bytes(32, "big")),
        }
    elif alg == "EdDSA":
        key = ed25519.Ed25519PrivateKey.generate()
        raw = serialization.Encoding.Raw
        jwk = {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": _b64(key.public_key().public_bytes(raw, serialization.PublicFormat.Raw)),
            "d": _b64(key.private_bytes(raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())),
        }
    else:
        raise ValueError(alg)
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


def public(jwk: dict[str, Any]) -> dict[str, Any]:
    """The public part of a private JWK, as the provider publishes it."""
    return {k: v for k, v in jwk.items() if k not in ("d", "p", "q", "dp", "dq", "qi")}


def token_header(token: str) -> dict[str, Any]:
    segment = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


class IdP:
    """One provider process. ``users`` are the accounts CIBA logs in, with extra token claims."""

    def __init__(
        self, keys: list[dict[str, Any]], users: dict[str, dict] | None = None, port: int = 0, audience: str = "matrix"
    ) -> None:
        if not (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
            raise RuntimeError(f"oidc-provider is not installed: run `npm ci` in {IDP_DIR}")
        self.dir = Path(tempfile.mkdtemp(prefix="idp-"))
        self._conf = {
            "port": port,
            "audience": audience,
            "users": users or {"alice": {}, "bob": {}},
            "jwks": {"keys": keys},
            "clients": [
                {
                    "client_id": CLIENT[0],
                    "client_secret": CLIENT[1],
                    "grant_types": ["client_credentials", CIBA],
                    "backchannel_token_delivery_mode": "poll",
                    "response_types": [],
                    "redirect_uris": [],
                },
                {
                    "client_id": RESOURCE_SERVER[0],
                    "client_secret": RESOURCE_SERVER[1],
                    "grant_types": [],
                    "response_types": [],
                    "redirect_uris": [],
                },
            ],
        }
        self.start()

    def start(self) -> None:
        """Starts the process (again, on the same port after a stop, so the issuer stays)."""
        (self.dir / "conf.json").write_text(json.dumps(self._conf))
        with (self.dir / "stderr.log").open("a") as log:
            self.proc = subprocess.Popen(
                [os.environ.get("IDP_NODE", "node"), str(IDP_DIR / "idp.mjs"), str(self.dir / "conf.json")],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        assert self.proc.stdout is not None
        if not select.select([self.proc.stdout], [], [], 15)[0]:
            self.proc.kill()
            raise RuntimeError(f"the provider did not start in 15 s; see {self.dir / 'stderr.log'}")
        line = self.proc.stdout.readline()
        if not line.startswith("READY "):
            raise RuntimeError(f"the provider failed: {line!r}; see {self.dir / 'stderr.log'}")
        ready = json.loads(line[6:])
        self.issuer: str = ready["issuer"]
        self.port: int = ready["port"]
        self._conf["port"] = self.port
        self.meta = self._request("GET", self.issuer + "/.well-known/openid-configuration")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()

    def _request(
        self, method: str, url: str, form: dict | None = None, body: Any = None, auth: tuple[str, str] | None = None
    ) -> Any:
        headers = {}
        data = None
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{method} {url}: HTTP {e.code}: {e.read()[:300]!r}") from None

    def user_token(self, user: str, resource: str = "urn:matrix:jwt:RS256") -> str:
        """A JWT access token for ``user`` (``sub``), through CIBA."""
        started = self._request(
            "POST",
            self.meta["backchannel_authentication_endpoint"],
            auth=CLIENT,
            form={"scope": "openid matrix:login", "login_hint": user, "resource": resource},
        )
        answer = self._request(
            "POST",
            self.meta["token_endpoint"],
            auth=CLIENT,
            form={"grant_type": CIBA, "auth_req_id": started["auth_req_id"]},
        )
        return answer["access_token"]

    def revoke(self, token: str) -> None:
        """Revokes a token (RFC 7009), as the client it was issued to."""
        self._request("POST", self.meta["revocation_endpoint"], auth=CLIENT, form={"token": token})

    def set_keys(self, keys: list[dict[str, Any]]) -> None:
        """Swaps the keystore of the running provider (same port, issuer and stored tokens); a
        restart keeps it."""
        self._request("POST", self.issuer + "/__test/jwks", body={"keys": keys})
        self._conf["jwks"] = {"keys": keys}

    def fault(self, path: str = "/jwks", mode: str = "500", **options: Any) -> None:
        """Makes ``path`` answer 500 / garbage / slow / hang / body=…; mode "off" heals it
        (``headers=`` are then added to the real answers)."""
        self._request("POST", self.issuer + "/__test/fault", body={"path": path, "mode": mode, **options})

    def requests(self, path: str = "/jwks") -> int:
        """How many requests ``path`` has had."""
        return int(self._request("GET", self.issuer + "/__test/requests").get(path, 0))
