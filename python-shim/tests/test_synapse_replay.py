"""Single-use tokens end to end: a real Synapse (SQLite, loopback) with `single_use_tokens`, in
embedded mode (`jwt:` layout) and in daemon mode (the daemon's flat TOML, socket-activated).

The module records each token in Synapse's own database; these tests send the same token many
times at once, replay tokens with and without `jti`, purge expired records, break the table under
a running Synapse, and use a token for user-interactive authentication."""

from __future__ import annotations

import concurrent.futures
import sqlite3
import time
import uuid

import pytest
from helpers import SECRET, token
from homeserver import Daemon, Homeserver, wait_until
from matrix_client import LOGIN_TYPE

#: The module's table in Synapse's database; spelt out, as operators and other tests rely on it.
TABLE = "synapse_token_auth_used_tokens"


@pytest.fixture(scope="module", params=["embedded", "daemon"])
def hs(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(f"replay-{request.param}")
    daemon = None
    if request.param == "embedded":
        module_config = {"jwt": {"secret": SECRET, "allow_registration": True, "single_use_tokens": True}}
    else:
        daemon = Daemon(
            directory,
            f'secret = "{SECRET}"\nallow_registration = true\nsingle_use_tokens = true\n[server]\nworkers = 1\n',
        )
        daemon.start()
        module_config = {"verifier": {"socket": str(daemon.socket), "timeout_seconds": 5}}
    server = Homeserver(directory, module_config)
    server.start()
    server.database = directory / "homeserver.db"
    yield server
    server.stop()
    if daemon:
        daemon.stop()


def jwt(sub: str = "alice", jti: str | None = None, ttl: int = 600) -> str:
    claims = {"sub": sub, "exp": int(time.time()) + ttl}
    if jti is not None:
        claims["jti"] = jti
    return token(claims)


def fresh(sub: str = "alice") -> str:
    return jwt(sub, jti=str(uuid.uuid4()))


def logged(hs, line: str) -> None:
    wait_until(lambda: line in hs.log_text(), 5, f"log line {line!r}")


def used_rows(hs) -> list[tuple[str, str, int]]:
    with sqlite3.connect(hs.database, timeout=10) as db:
        return db.execute(f"SELECT replay_key, user_id, used_until FROM {TABLE}").fetchall()


def test_same_token_fifty_times_at_once_logs_in_once(hs):
    tok = fresh()
    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(lambda _: hs.login("alice", tok), range(50)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [403] * 49, results
    assert {body["errcode"] for status, body in results if status == 403} == {"M_FORBIDDEN"}
    logged(hs, "JWT login rejected for @alice:test.local: token_replayed")


def test_token_without_jti_is_refused_the_second_time(hs):
    tok = jwt()
    status, body = hs.login("alice", tok)
    assert status == 200, body
    status, body = hs.login("@alice:test.local", tok)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    logged(hs, "JWT login rejected for @alice:test.local: token_replayed")
    # Another token of the same user and claims but a later `exp` is another token.
    assert hs.login("alice", jwt(ttl=601))[0] == 200


def test_too_long_jti_is_refused(hs):
    status, body = hs.login("alice", jwt(jti="j" * 257))
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    logged(hs, "JWT login rejected for @alice:test.local: invalid_token_id")
    assert hs.login("alice", jwt(jti="j" * 256))[0] == 200


def test_records_are_kept_until_exp_plus_leeway_and_then_purged(hs):
    jti = str(uuid.uuid4())
    tok = jwt(jti=jti, ttl=30)
    assert hs.login("alice", tok)[0] == 200
    rows = {key: (user, until) for key, user, until in used_rows(hs)}
    user, until = rows[f"jti:{jti}"]
    assert user == "@alice:test.local"
    assert abs(until - (time.time() + 30 + 60)) < 10
    # The purge the main process runs every few minutes, on this Synapse's own table, at a time
    # when only this token is past its time.
    from synapse_token_auth import replay

    with sqlite3.connect(hs.database, timeout=10) as db:
        deleted = replay._purge_txn(db.cursor(), until + 1)
    assert deleted >= 1
    remaining = [key for key, _, _ in used_rows(hs)]
    assert f"jti:{jti}" not in remaining
    assert remaining, "records of tokens still alive are kept"


def _uia_delete(hs, device_id: str, access_token: str, tok: str | None) -> tuple[int, dict]:
    path = f"/_matrix/client/v3/devices/{device_id}"
    status, challenge = hs.request("DELETE", path, {}, access_token)
    assert status == 401, challenge
    assert [LOGIN_TYPE] in [flow["stages"] for flow in challenge["flows"]], challenge
    auth = {
        "type": LOGIN_TYPE,
        "identifier": {"type": "m.id.user", "user": "uia"},
        "token": tok,
        "session": challenge["session"],
    }
    return hs.request("DELETE", path, {"auth": auth}, access_token)


def test_user_interactive_auth_takes_a_fresh_token_each_time(hs):
    devices = []
    for _ in range(3):
        status, body = hs.login("uia", fresh("uia"))
        assert status == 200, body
        devices.append(body["device_id"])
    status, body = hs.login("uia", fresh("uia"))
    access_token = body["access_token"]

    tok = fresh("uia")
    status, body = _uia_delete(hs, devices[0], access_token, tok)
    assert status == 200, body
    # The same token a second time, in a new session: refused, the device stays.
    status, body = _uia_delete(hs, devices[1], access_token, tok)
    assert status == 401 and body.get("errcode") == "M_FORBIDDEN", body
    logged(hs, "JWT login rejected for @uia:test.local: token_replayed")
    # A token used to log in cannot authorise a request afterwards either.
    login_token = fresh("uia")
    assert hs.login("uia", login_token)[0] == 200
    status, body = _uia_delete(hs, devices[1], access_token, login_token)
    assert status == 401, body
    status, listing = hs.request("GET", "/_matrix/client/v3/devices", access_token=access_token)
    ids = {d["device_id"] for d in listing["devices"]}
    assert devices[0] not in ids and devices[1] in ids
    assert _uia_delete(hs, devices[1], access_token, fresh("uia"))[0] == 200


def test_database_error_refuses_the_login_and_synapse_keeps_serving(hs):
    assert hs.login("alice", fresh())[0] == 200
    with sqlite3.connect(hs.database, timeout=10) as db:
        db.execute(f"DROP TABLE {TABLE}")
    status, body = hs.login("alice", fresh())
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body
    logged(hs, " ERROR JWT login refused for @alice:test.local: the single-use token could not be recorded")
    assert "(replay_store_unavailable: OperationalError: no such table" in hs.log_text()
    assert hs.request("GET", "/_matrix/client/versions")[0] == 200
    # The next login creates the table again.
    tok = fresh()
    assert hs.login("alice", tok)[0] == 200
    assert hs.login("alice", tok)[0] == 403


def test_module_errors_never_reach_synapse(hs):
    assert "Failed to run module API callback" not in hs.log_text()
