"""The original module's `oauth` and `oidc` login types through a real Synapse, with tokens a real
OpenID provider (node-oidc-provider, tests/idp) issued: JWT access tokens checked against its
JWKS endpoint, opaque tokens checked at its introspection endpoint (active, revoked, expired),
the registration webhook (a real HTTP receiver here), external ids, e-mail binding, the metadata
resources, and the Zitadel-style `oidc` type (the provider's introspection answers carry
Zitadel's project roles claim)."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import sqlite3
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from homeserver import Daemon, Homeserver, wait_until
from idp import RESOURCE_SERVER, IdP, new_key

OAUTH = "com.famedly.login.token.oauth"
OIDC = "com.famedly.login.token.oidc"
PROJECT = "5678"
ROLES = f"urn:zitadel:iam:org:project:{PROJECT}:roles"
USERS = {
    "alice": {"name": "Alice A.", "email": "alice@example.org", "localpart": "alice", ROLES: {"User": {"1": "org"}}},
    "bob": {"localpart": "bob", ROLES: {"Viewer": {"1": "org"}}},
    "carol": {"name": "Carol", "localpart": "carol", ROLES: ["OrgAdmin"]},
    "dave": {},
    "erin": {"groups": ["staff"]},
    # A second provider account that claims alice's localpart.
    "mallory": {"preferred_username": "alice", "localpart": "alice", ROLES: {"User": {}}},
}


class Webhook:
    """A registration webhook receiver: records each call, answers `status`."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict, str | None]] = []
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.calls.append((json.loads(body), self.headers.get("Authorization")))
                self.send_response(hook.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/registered"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


def toml_value(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def toml(tables: dict) -> str:
    return "".join(
        f"[{name}]\n" + "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in table.items())
        for name, table in tables.items()
    )


class Setup:
    """A provider, a webhook receiver and a Synapse; in daemon mode the daemon between them holds
    the `oauth` and `oidc` sections and their secrets (from files), and homeserver.yaml names
    only the daemon."""

    def __init__(self, mode: str, directory) -> None:
        self.idp = IdP([new_key("RS256", "rsa-1")], users=USERS)
        self.hook = Webhook()
        self.daemon = None
        issuer = self.idp.issuer
        self.config = {
            "oauth": {
                # Opaque tokens: the provider's introspection endpoint, as its resource server.
                "introspection_validation": {
                    "endpoint": self.idp.meta["introspection_endpoint"],
                    "auth": {"type": "basic", "username": RESOURCE_SERVER[0], "password": RESOURCE_SERVER[1]},
                    "localpart_path": "preferred_username",
                    "displayname_path": "name",
                    "email_path": "email",
                    "required_scopes": "matrix:login",
                    "validator": ["not", ["in", "groups", ["list_any_of", ["equal", "staff"]]]],
                },
                "username_type": "localpart",
                "registration_enabled": True,
                "notify_on_registration": {"url": self.hook.url, "auth": ["bearer", "hook-secret"]},
                "expose_metadata_resource": {"name": "oauth-meta", "issuer": issuer},
            },
            "oidc": {
                "issuer": issuer,
                "client_id": RESOURCE_SERVER[0],
                "client_secret": RESOURCE_SERVER[1],
                "project_id": int(PROJECT),
                "organization_id": 1234,
                "allowed_client_ids": ["svc"],
                "allow_registration": True,
            },
        }
        module_config = self.config
        if mode == "daemon":
            secrets = directory / "secrets"
            secrets.mkdir()
            (secrets / "introspection").write_text(RESOURCE_SERVER[1] + "\n")
            (secrets / "webhook").write_text("hook-secret\n")
            oauth = self.config["oauth"]
            oauth["introspection_validation"]["auth"] = {
                "type": "basic",
                "username": RESOURCE_SERVER[0],
                "password_file": str(secrets / "introspection"),
            }
            oauth["notify_on_registration"]["auth"] = {"type": "bearer", "token_file": str(secrets / "webhook")}
            oidc = dict(self.config["oidc"])
            del oidc["client_secret"]
            oidc["client_secret_file"] = str(secrets / "introspection")
            self.daemon = Daemon(directory, toml({"oauth": oauth, "oidc": oidc}))
            self.daemon.start()
            module_config = {
                "verifier": {"socket": str(self.daemon.socket), "login_types": [OAUTH, OIDC], "timeout_seconds": 10}
            }
        self.hs = Homeserver(directory, module_config)
        self.hs.start()

    def close(self) -> None:
        self.hs.stop()
        if self.daemon:
            self.daemon.stop()
        self.idp.stop()
        self.hook.stop()

    def login(self, login_type: str, user: str, token: str) -> tuple[int, dict]:
        return token_login(self.hs, login_type, user, token)

    def refused(self, login_type: str, user: str, token: str, reason: str) -> None:
        """The login gets 403 and one more log line with `reason` for `user`."""
        name = "OAuth" if login_type == OAUTH else "OIDC"
        line = re.compile(rf"{name} login (rejected|refused) for @{user}:test\.local: {reason}\b")
        before = len(line.findall(self.hs.log_text()))
        status, body = self.login(login_type, user, token)
        assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), body
        wait_until(lambda: len(line.findall(self.hs.log_text())) == before + 1, 5, f"{reason} for {user}")

    def db(self, query: str, *args) -> list:
        with sqlite3.connect(self.hs.dir / "homeserver.db") as connection:
            return connection.execute(query, args).fetchall()


@pytest.fixture(scope="module", params=["embedded", "daemon"])
def setup(request, tmp_path_factory):
    s = Setup(request.param, tmp_path_factory.mktemp(request.param))
    yield s
    s.close()


def opaque(setup, user: str, ttl: int | None = None) -> str:
    return setup.idp.user_token(user, "urn:matrix:opaque" + (f":ttl={ttl}" if ttl else ""))


def test_introspected_token_registers_after_the_webhook_and_binds_email_and_external_id(setup):
    tok = opaque(setup, "alice")
    status, body = setup.login(OAUTH, "alice", tok)
    assert status == 200, body
    assert body["user_id"] == "@alice:test.local"
    # The webhook was called first, with the original's body and the configured credential.
    assert setup.hook.calls == [
        (
            {"localpart": "alice", "fully_qualified_uid": "@alice:test.local", "displayname": "Alice A."},
            "Bearer hook-secret",
        )
    ]
    assert setup.db("SELECT address FROM user_threepids WHERE user_id = '@alice:test.local'") == [
        ("alice@example.org",)
    ]
    assert setup.db("SELECT auth_provider, external_id FROM user_external_ids WHERE user_id = '@alice:test.local'") == [
        (setup.idp.issuer, "alice")
    ]
    assert setup.db("SELECT displayname FROM profiles WHERE full_user_id = '@alice:test.local'") == [("Alice A.",)]
    # A second login of the same user: no second webhook call.
    status, _ = setup.login(OAUTH, "alice", opaque(setup, "alice"))
    assert status == 200
    assert len(setup.hook.calls) == 1
    assert "OAuth login accepted for @alice:test.local, registered" in setup.hs.log_text()
    if setup.daemon is not None:
        # The daemon holds the sections and their secrets; homeserver.yaml names only the daemon.
        text = setup.hs.config.read_text()
        assert RESOURCE_SERVER[1] not in text and "hook-secret" not in text and "oauth-meta" not in text


def test_an_introspection_login_costs_one_round_trip(setup):
    tokens = [opaque(setup, "alice") for _ in range(3)]
    before = setup.idp.requests("/token/introspection")
    for tok in tokens:
        assert setup.login(OAUTH, "alice", tok)[0] == 200
    assert setup.idp.requests("/token/introspection") - before == 3
    # Nothing is cached: a revoked token is refused at once.
    setup.idp.revoke(tokens[0])
    setup.refused(OAUTH, "alice", tokens[0], "token_inactive")


def test_another_provider_account_cannot_take_over_a_bound_account(setup):
    setup.login(OAUTH, "alice", opaque(setup, "alice"))
    setup.refused(OAUTH, "alice", opaque(setup, "mallory"), "external_id_mismatch")


def test_revoked_expired_and_unknown_tokens_are_inactive(setup):
    tok = opaque(setup, "alice")
    setup.idp.revoke(tok)
    setup.refused(OAUTH, "alice", tok, "token_inactive")
    short = opaque(setup, "alice", ttl=1)
    time.sleep(2.1)
    setup.refused(OAUTH, "alice", short, "token_inactive")
    setup.refused(OAUTH, "alice", "not-a-token-the-provider-issued", "token_inactive")


def test_the_token_names_the_user_not_the_client(setup):
    setup.refused(OAUTH, "bob", opaque(setup, "alice"), "subject_mismatch")
    status, _ = setup.login(OAUTH, "@alice:test.local", opaque(setup, "alice"))
    assert status == 403  # username_type localpart: a full user id is not a localpart


def test_validator_and_scopes(setup):
    setup.refused(OAUTH, "erin", opaque(setup, "erin"), "claims_rejected")
    # A token for the wrong resource has no matrix:login scope.
    tok = setup.idp._request(
        "POST",
        setup.idp.meta["token_endpoint"],
        auth=("svc", "svc-secret"),
        form={"grant_type": "client_credentials", "resource": "urn:matrix:opaque", "scope": "matrix:login"},
    )["access_token"]
    # client_credentials tokens have no user: refused for that, or for the scope, never accepted.
    status, _ = setup.login(OAUTH, "svc", tok)
    assert status == 403


def test_failing_webhook_interrupts_registration(setup):
    setup.hook.status = 500
    try:
        setup.refused(OAUTH, "dave", opaque(setup, "dave"), "registration_webhook_failed")
    finally:
        setup.hook.status = 200
    assert setup.db("SELECT name FROM users WHERE name = '@dave:test.local'") == []
    assert "OAuth login refused for @dave:test.local: registration_webhook_failed (HTTP 500)" in setup.hs.log_text()


def test_introspection_endpoint_down_or_lying_refuses_without_a_500(setup):
    for mode in ("500", "garbage"):
        setup.idp.fault("/token/introspection", mode)
        try:
            setup.refused(OAUTH, "alice", opaque(setup, "alice"), "introspection_failed")
        finally:
            setup.idp.fault("/token/introspection", "off")


def test_metadata_resources(setup):
    status, body = setup.hs.request("GET", "/_famedly/login/oauth-meta")
    assert (status, body) == (200, {"name": "oauth-meta", "issuer": setup.idp.issuer})
    status, body = setup.hs.request("GET", f"/_famedly/login/{OIDC}")
    assert status == 200
    assert body == {
        "issuer": setup.idp.issuer,
        "issuer-metadata": setup.idp.issuer + "/.well-known/openid-configuration",
        "organization-id": "1234",
        "project-id": PROJECT,
    }


def test_oidc_type_checks_the_project_roles(setup):
    status, body = setup.login(OIDC, "carol", opaque(setup, "carol"))
    assert (status, body.get("user_id")) == (200, "@carol:test.local"), body
    setup.refused(OIDC, "bob", opaque(setup, "bob"), "missing_role")
    setup.refused(OIDC, "alice", opaque(setup, "carol"), "subject_mismatch")
    tok = opaque(setup, "carol")
    setup.idp.revoke(tok)
    setup.refused(OIDC, "carol", tok, "token_inactive")


@contextlib.contextmanager
def oauth_homeserver(tmp_path, mode: str, config: dict):
    """Synapse serving the `oauth` type of `config`: verified in the module (embedded), or by a
    daemon with that config, which then also fetches and caches the key set (daemon)."""
    daemon = None
    if mode == "daemon":
        daemon = Daemon(tmp_path, toml(config))
        daemon.start()
        config = {"verifier": {"socket": str(daemon.socket), "login_types": [OAUTH], "timeout_seconds": 10}}
    hs = Homeserver(tmp_path, config)
    try:
        hs.start()
        yield hs
    finally:
        hs.stop()
        if daemon:
            daemon.stop()


def token_login(hs, login_type: str, user: str, token: str) -> tuple[int, dict]:
    """POST /login of `login_type` with `token`, for the user `user` names."""
    return hs.request(
        "POST",
        "/_matrix/client/v3/login",
        {"type": login_type, "identifier": {"type": "m.id.user", "user": user}, "token": token},
    )


@pytest.mark.parametrize("mode", ["embedded", "daemon"])
def test_jwt_validation_against_the_jwks_endpoint(tmp_path, mode):
    idp = IdP([new_key("ES256", "ec-1")], users={"frank": {"name": "Frank"}, "grace": {}})
    config = {
        "oauth": {
            "jwt_validation": {
                "jwks_endpoint": idp.meta["jwks_uri"],
                "localpart_path": "sub",
                "displayname_path": "name",
                "required_scopes": ["matrix:login"],
                "validator": ["in", "aud", ["equal", "matrix"]],
                "require_expiry": True,
                "single_use_tokens": True,
            },
            "username_type": "user_id",
            "registration_enabled": True,
        }
    }
    try:
        with oauth_homeserver(tmp_path, mode, config) as hs:
            status, body = token_login(hs, OAUTH, "frank", idp.user_token("frank", "urn:matrix:jwt:ES256"))
            assert (status, body.get("user_id")) == (200, "@frank:test.local"), body
            # The key set was fetched once, for the first login; later logins use the cache.
            fetched = idp.requests("/jwks")
            for _ in range(3):
                assert token_login(hs, OAUTH, "frank", idp.user_token("frank", "urn:matrix:jwt:ES256"))[0] == 200
            assert idp.requests("/jwks") == fetched == 1
            status, _ = token_login(hs, OAUTH, "@frank:test.local", idp.user_token("frank", "urn:matrix:jwt:ES256"))
            assert status == 200
            # Single use: a token logs in once.
            tok = idp.user_token("frank", "urn:matrix:jwt:ES256")
            assert token_login(hs, OAUTH, "frank", tok)[0] == 200
            assert token_login(hs, OAUTH, "frank", tok)[0] == 403
            assert "OAuth login rejected for @frank:test.local: token_replayed" in hs.log_text()
            # Another audience fails the validator; another user's token names grace.
            status, _ = token_login(hs, OAUTH, "frank", idp.user_token("frank", "urn:matrix:jwt:ES256:aud=elsewhere"))
            assert status == 403
            status, _ = token_login(hs, OAUTH, "frank", idp.user_token("grace", "urn:matrix:jwt:ES256"))
            assert status == 403
            log = hs.log_text()
            assert "OAuth login rejected for @frank:test.local: claims_rejected" in log
            assert "OAuth login rejected for @frank:test.local: subject_mismatch" in log
    finally:
        idp.stop()


@pytest.mark.parametrize("mode", ["embedded", "daemon"])
def test_without_username_type_the_token_alone_names_the_user(tmp_path, mode):
    # As in the original: with `username_type` unset, the login's identifier is not compared.
    idp = IdP([new_key("ES256", "ec-1")], users={"grace": {}})
    config = {
        "oauth": {
            "jwt_validation": {
                "jwks_endpoint": idp.meta["jwks_uri"],
                "localpart_path": "sub",
                "validator": ["in", "aud", ["equal", "matrix"]],
            },
            "registration_enabled": True,
        }
    }
    try:
        with oauth_homeserver(tmp_path, mode, config) as hs:
            for identifier in ("grace", "somebody-else", "@mallory:test.local"):
                status, body = token_login(hs, OAUTH, identifier, idp.user_token("grace", "urn:matrix:jwt:ES256"))
                assert (status, body.get("user_id")) == (200, "@grace:test.local"), (identifier, body)
            # The token still has to verify.
            status, _ = token_login(hs, OAUTH, "grace", idp.user_token("grace", "urn:matrix:jwt:ES256:aud=elsewhere"))
            assert status == 403
    finally:
        idp.stop()


class JwtIntrospection:
    """An introspection endpoint for JWT access tokens. oidc-provider does not introspect its JWT
    access tokens (400 unsupported_token_type, see shared notes), while Keycloak and others do;
    this stand-in answers as they do: `active` and the token's own claims, for a client with the
    right credentials. `override` changes what it says, to make it disagree with the JWT."""

    def __init__(self) -> None:
        self.override: dict = {}
        self.calls = 0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                stand_in.calls += 1
                form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                expected = "Basic " + base64.b64encode(b"matrix-rs:rs-secret").decode()
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.end_headers()
                    return
                payload = form["token"][0].split(".")[1]
                claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
                body = json.dumps({"active": True, **claims, **stand_in.override}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/introspect"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_jwt_and_introspection_together(tmp_path):
    idp = IdP([new_key("RS256", "rsa-1")], users={"heidi": {"name": "Heidi"}})
    introspection = JwtIntrospection()
    config = {
        "oauth": {
            "jwt_validation": {
                "jwks_endpoint": idp.meta["jwks_uri"],
                "localpart_path": "sub",
                "displayname_path": "name",
            },
            "introspection_validation": {
                "endpoint": introspection.url,
                "auth": ["basic", "matrix-rs", "rs-secret"],
                "localpart_path": "sub",
                "displayname_path": "name",
                "required_scopes": "matrix:login",
            },
            "username_type": "fq_uid",
            "registration_enabled": True,
        }
    }
    hs = Homeserver(tmp_path, config)
    hs.start()
    try:

        def login(user: str) -> int:
            return token_login(hs, OAUTH, user, idp.user_token("heidi", "urn:matrix:jwt:RS256"))[0]

        assert login("@heidi:test.local") == 200
        assert introspection.calls == 1
        # The localpart alone is not a full user id (username_type fq_uid).
        assert login("heidi") == 403
        for override in ({"sub": "mallory"}, {"name": "Someone Else"}):
            introspection.override = override
            assert login("@heidi:test.local") == 403
        introspection.override = {"active": False}
        assert login("@heidi:test.local") == 403
        log = hs.log_text()
        assert log.count("OAuth login rejected for @heidi:test.local: claims_disagree") == 2
        assert "OAuth login rejected for @heidi:test.local: invalid_user" in log
        assert "OAuth login rejected for @heidi:test.local: token_inactive" in log
    finally:
        hs.stop()
        idp.stop()
        introspection.server.shutdown()
