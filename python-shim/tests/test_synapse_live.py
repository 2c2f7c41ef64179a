"""End to end against a real Synapse (SQLite, loopback): the module in embedded mode, and in
daemon mode with the real verifier daemon socket-activated by systemd-socket-activate.

Each configuration runs with registration allowed and refused; every refusal is checked for the
403 M_FORBIDDEN the client sees and for the reason code in Synapse's log."""

from __future__ import annotations

import concurrent.futures
import time

import pytest
import synapse
from helpers import SECRET, SERVER_NAME, claims, token
from homeserver import Daemon, Homeserver, wait_until

SYNAPSE_VERSION = "1.163.2"
AUD = "test.local-clients"


def daemon_toml(allow_registration: bool) -> str:
    return (
        f'secret = "{SECRET}"\nallow_registration = {str(allow_registration).lower()}\n'
        f'audiences = ["{AUD}"]\n[server]\nworkers = 1\n'
    )


@pytest.fixture(
    scope="module",
    params=[("embedded", True), ("embedded", False), ("daemon", True), ("daemon", False), ("daemon-url", True)],
    ids=[
        "embedded-registration",
        "embedded-no-registration",
        "daemon-registration",
        "daemon-no-registration",
        "daemon-over-tcp-registration",
    ],
)
def hs(request, tmp_path_factory):
    mode, allow_registration = request.param
    directory = tmp_path_factory.mktemp(f"{mode}-{allow_registration}")
    daemon = None
    if mode == "embedded":
        module_config = {"secret": SECRET, "allow_registration": allow_registration, "audiences": [AUD]}
    else:
        daemon = Daemon(directory, daemon_toml(allow_registration), tcp=mode == "daemon-url")
        daemon.start()
        if daemon.url:
            module_config = {"verifier": {"url": daemon.url, "timeout_seconds": 5}}
        else:
            module_config = {"verifier": {"socket": str(daemon.socket), "timeout_seconds": 5}}
    server = Homeserver(directory, module_config)
    server.start()
    server.allow_registration = allow_registration
    server.admin_token = server.register_with_shared_secret("root", admin=True)
    server.register_with_shared_secret("existing", admin=False)
    yield server
    server.stop()
    if daemon:
        daemon.stop()


def jwt(sub: str, **extra) -> str:
    return token(claims(sub, aud=AUD, **extra))


def assert_refused(hs, user: str, tok: str | None, reason: str) -> None:
    status, body = hs.login(user, tok)
    assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), body
    user_id = user if user.startswith("@") else f"@{user.lower()}:{SERVER_NAME}"
    line = f"JWT login rejected for {user_id}: {reason}"
    # the module logs asynchronously to a file; give it a moment
    wait_until(lambda: line in hs.log_text(), 5, f"log line {line!r}")


def test_synapse_is_the_pinned_release():
    # e.g. "1.163.2 (b=main,3840349)"
    assert synapse.__version__.split()[0] == SYNAPSE_VERSION


def test_login_flows_list_the_login_type(hs):
    status, body = hs.request("GET", "/_matrix/client/v3/login")
    assert status == 200
    assert {"type": "com.famedly.login.token"} in body["flows"]


def test_new_user_is_registered_only_when_allowed(hs):
    status, body = hs.login("newcomer", jwt("newcomer"))
    if hs.allow_registration:
        assert status == 200, body
        assert body["user_id"] == "@newcomer:test.local"
        status, again = hs.login("newcomer", jwt("newcomer"))
        assert (status, again["user_id"]) == (200, "@newcomer:test.local")
    else:
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
        wait_until(lambda: "JWT login rejected for @newcomer:test.local: unknown_user" in hs.log_text(), 5, "log")
        status, _ = hs.request("GET", "/_synapse/admin/v2/users/@newcomer:test.local", access_token=hs.admin_token)
        assert status == 404, "no account was created"


@pytest.mark.parametrize("user", ["existing", "@existing:test.local", "Existing", "@EXISTING:test.local"])
def test_existing_user_logs_in_and_gets_the_canonical_id(hs, user):
    status, body = hs.login(user, jwt("existing"))
    assert status == 200, body
    assert body["user_id"] == "@existing:test.local"
    assert body["access_token"].startswith("syt_")
    # In both modes the log names the key that verified the token.
    wait_until(
        lambda: "JWT login accepted for @existing:test.local (alg=HS512 kid= key=primary)" in hs.log_text(), 5, "log"
    )


def _bad_tokens():
    now = int(time.time())
    return [
        ("wrong key", token(claims("existing", aud=AUD), secret=SECRET[::-1]), "bad_signature"),
        ("wrong algorithm", token(claims("existing", aud=AUD), alg="HS256"), "algorithm_not_allowed"),
        ("RS256 token", token(claims("existing", aud=AUD), alg="RS256"), "algorithm_not_allowed"),
        ("expired", token({"sub": "existing", "aud": AUD, "exp": now - 3600}), "expired"),
        ("missing exp", token({"sub": "existing", "aud": AUD}), "missing_expiry"),
        ("future nbf", jwt("existing", nbf=now + 3600), "not_yet_valid"),
        ("wrong audience", token(claims("existing", aud="someone-else")), "wrong_audience"),
        ("foreign server", jwt("@existing:other.example"), "foreign_server"),
        ("subject mismatch", jwt("root"), "subject_mismatch"),
        ("string admin claim", jwt("existing", admin="true"), "invalid_admin_claim"),
        ("garbage", "not-a-jwt", "malformed_token"),
    ]


@pytest.mark.parametrize(("case", "tok", "reason"), _bad_tokens(), ids=[c for c, _, _ in _bad_tokens()])
def test_bad_tokens_are_refused_with_the_reason_logged(hs, case, tok, reason):
    assert_refused(hs, "existing", tok, reason)
    assert tok not in hs.log_text(), "the token must never be logged"


def _unusable_input():
    return [
        ("token over the daemon's body bound", "existing", "a" * 20_000, "token_too_large", "@existing:test.local"),
        (
            "token with a lone surrogate",
            "existing",
            jwt("existing") + "\ud800",
            "malformed_token",
            "@existing:test.local",
        ),
        ("user over the daemon's body bound", "a" * 20_000, jwt("existing"), "invalid_user", "@" + "a" * 254),
        ("user with a lone surrogate", "\ud800", jwt("existing"), "invalid_user", "@\\ud800:test.local"),
    ]


@pytest.mark.parametrize(
    ("case", "user", "tok", "reason", "logged"), _unusable_input(), ids=[c[0] for c in _unusable_input()]
)
def test_unusable_input_is_refused_at_info_before_the_verifier(hs, case, user, tok, reason, logged):
    status, body = hs.login(user, tok)
    assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), body
    line = f" INFO JWT login rejected for {logged}: {reason}"
    wait_until(lambda: line in hs.log_text(), 5, f"log line {line!r}")
    errors = [line for line in hs.log_text().splitlines() if "synapse_token_auth" in line and " ERROR " in line]
    assert errors == [], "a client's input looks like an outage"


def test_foreign_identifier_is_refused(hs):
    assert_refused(hs, "@existing:other.example", jwt("existing"), "foreign_server")


def test_missing_token_is_a_bad_request(hs):
    status, body = hs.login("existing", None)
    assert status == 400, body
    assert "token" in body["error"]


def test_displayname_and_admin_claims_are_applied(hs):
    status, body = hs.login("existing", jwt("existing", displayname="Ex Isting", admin=True))
    assert status == 200, body
    status, profile = hs.request("GET", "/_matrix/client/v3/profile/@existing:test.local/displayname")
    assert (status, profile.get("displayname")) == (200, "Ex Isting")
    status, user = hs.request("GET", "/_synapse/admin/v2/users/@existing:test.local", access_token=hs.admin_token)
    assert (status, user["admin"]) == (200, True)
    status, body = hs.login("existing", jwt("existing", admin=False))
    assert status == 200, body
    status, user = hs.request("GET", "/_synapse/admin/v2/users/@existing:test.local", access_token=hs.admin_token)
    assert user["admin"] is False


def test_parallel_first_logins_create_one_account(hs):
    tok = jwt("racer", displayname="Racer")
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda _: hs.login("racer", tok), range(20)))
    statuses = sorted(status for status, _ in results)
    if hs.allow_registration:
        assert statuses == [200] * 20, results
        assert {body["user_id"] for _, body in results} == {"@racer:test.local"}
        status, listing = hs.request(
            "GET", "/_synapse/admin/v2/users?name=racer&guests=false", access_token=hs.admin_token
        )
        assert status == 200
        assert [u["name"] for u in listing["users"]] == ["@racer:test.local"], listing
    else:
        assert statuses == [403] * 20, results


def test_module_errors_never_reach_synapse(hs):
    assert "Failed to run module API callback" not in hs.log_text()
    assert "Traceback" not in hs.log_text()


@pytest.fixture(scope="module")
def hs_with_daemon(tmp_path_factory):
    directory = tmp_path_factory.mktemp("daemon-down")
    daemon = Daemon(directory, daemon_toml(True))
    daemon.start()
    server = Homeserver(directory, {"verifier": {"socket": str(daemon.socket), "timeout_seconds": 2}})
    server.start()
    yield server, daemon
    server.stop()
    daemon.stop()


def test_daemon_down_fails_closed_and_synapse_keeps_serving(hs_with_daemon):
    hs, daemon = hs_with_daemon
    status, body = hs.login("alive", jwt("alive"))
    assert status == 200, body
    daemon.kill()
    started = time.monotonic()
    status, body = hs.login("alive", jwt("alive"))
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body
    assert time.monotonic() - started < 5, "bounded by the timeout"
    assert hs.request("GET", "/_matrix/client/versions")[0] == 200
    wait_until(lambda: "gave no verdict (daemon_unavailable" in hs.log_text(), 5, "ERROR line")
    assert " ERROR JWT login refused for @alive:test.local" in hs.log_text()
