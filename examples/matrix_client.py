"""A minimal Matrix client for the demo, the tests and the benchmarks: HS* tokens, the JWT login,
and Synapse's shared-secret registration. Standard library only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.error
import urllib.request
from typing import Any

LOGIN_TYPE = "com.famedly.login.token"
_HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signing_input(claims: dict[str, Any], alg: str, header: dict[str, Any] | None = None) -> bytes:
    """`base64url(header).base64url(claims)`, the bytes a JWS signature covers."""
    head = {"alg": alg, "typ": "JWT", **(header or {})}
    return f"{b64url(json.dumps(head).encode())}.{b64url(json.dumps(claims).encode())}".encode()


def hs_token(claims: dict[str, Any], secret: str, alg: str = "HS512", header: dict[str, Any] | None = None) -> str:
    """A compact JWS signed with HMAC (HS256, HS384 or HS512) over the UTF-8 bytes of `secret`."""
    message = signing_input(claims, alg, header)
    signature = hmac.new(secret.encode(), message, _HASHES[alg]).digest()
    return f"{message.decode()}.{b64url(signature)}"


class Client:
    """JSON over HTTP to one homeserver; a new connection per request."""

    def __init__(self, base: str, timeout: float = 30) -> None:
        self.base = base.rstrip("/")
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None, access_token: str | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if access_token:
            req.add_header("Authorization", f"Bearer {access_token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            payload = e.read()
            try:
                return e.code, json.loads(payload)
            except ValueError:
                return e.code, payload.decode(errors="replace")

    def login(self, user: str, token: str | None) -> tuple[int, Any]:
        """The JWT login this project implements; `token` None leaves the field out."""
        body: dict[str, Any] = {"type": LOGIN_TYPE, "identifier": {"type": "m.id.user", "user": user}}
        if token is not None:
            body["token"] = token
        return self.request("POST", "/_matrix/client/v3/login", body)

    def register(self, shared_secret: str, localpart: str, admin: bool, password: str = "test-only-password") -> dict:
        """Creates a user as `register_new_matrix_user` does; returns Synapse's answer (with an
        access token)."""
        status, nonce = self.request("GET", "/_synapse/admin/v1/register")
        assert status == 200, nonce
        mac = hmac.new(shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(
            b"\x00".join(
                [nonce["nonce"].encode(), localpart.encode(), password.encode(), b"admin" if admin else b"notadmin"]
            )
        )
        status, body = self.request(
            "POST",
            "/_synapse/admin/v1/register",
            {
                "nonce": nonce["nonce"],
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac.hexdigest(),
            },
        )
        assert status == 200, body
        return body
