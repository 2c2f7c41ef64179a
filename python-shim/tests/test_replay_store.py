"""Single-use tokens against a ModuleApi stand-in (`create_autospec` of Synapse's ModuleApi) whose
`run_db_interaction` runs the module's transactions on a real SQLite database, or fails the way a
broken database does. End to end with a real Synapse: test_synapse_replay.py."""

from __future__ import annotations

import logging
import sqlite3
import time
from types import SimpleNamespace

from helpers import SECRET, claims, token
from synapse_token_auth import LOGIN_TYPE, TokenAuthenticator
from test_module import honest_verdict, make_api, run
from twisted.internet import defer

TABLE = "synapse_token_auth_used_tokens"


class Cursor:
    """What the module's transactions use of Synapse's LoggingTransaction."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._cursor = connection.cursor()
        self.database_engine = SimpleNamespace()  # not a PostgresEngine

    def execute(self, sql, args=()):
        self._cursor.execute(sql, args)

    @property
    def rowcount(self):
        return self._cursor.rowcount


def sqlite_api(path, existing=None, fail: list | None = None):
    """A ModuleApi stand-in on the SQLite database at `path`; while `fail` holds an exception,
    every database interaction raises it."""
    api = make_api(existing if existing is not None else {"@alice:test.local": "@alice:test.local"})
    api.should_run_background_tasks.return_value = True

    def run_db_interaction(desc, func, *args):
        if fail:
            return defer.fail(fail[0])
        connection = sqlite3.connect(path)
        try:
            with connection:
                return defer.succeed(func(Cursor(connection), *args))
        except Exception as e:
            return defer.fail(e)
        finally:
            connection.close()

    api.run_db_interaction.side_effect = run_db_interaction
    return api


def rows(path):
    with sqlite3.connect(path) as connection:
        return connection.execute(f"SELECT replay_key, user_id, used_until FROM {TABLE}").fetchall()


def single_use_module(api, **config):
    config = {"secret": SECRET, "single_use_tokens": True, **config}
    return TokenAuthenticator(TokenAuthenticator.parse_config(config), api)


def login(module, user, tok):
    return run(module.check_auth(user, LOGIN_TYPE, {"token": tok}))


def test_store_is_not_used_without_single_use_tokens(tmp_path):
    api = sqlite_api(tmp_path / "db")
    module = TokenAuthenticator(TokenAuthenticator.parse_config({"secret": SECRET}), api)
    tok = token(claims("alice", jti="one"))
    assert login(module, "alice", tok) and login(module, "alice", tok)
    api.run_db_interaction.assert_not_called()
    api.looping_background_call.assert_not_called()


def test_token_logs_in_once_and_is_remembered_until_exp_plus_leeway(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    db = tmp_path / "db"
    module = single_use_module(sqlite_api(db))
    exp = int(time.time()) + 600
    tok = token({"sub": "alice", "exp": exp, "jti": "one"})
    assert login(module, "alice", tok) == ("@alice:test.local", None)
    assert login(module, "Alice", tok) is None
    assert "JWT login rejected for @alice:test.local: token_replayed" in caplog.text
    assert rows(db) == [("jti:one", "@alice:test.local", exp + 60)]
    # Without `jti`, the token itself is the key.
    tok = token({"sub": "alice", "exp": exp})
    assert login(module, "alice", tok) and login(module, "alice", tok) is None
    assert [key[:4] for key, _, _ in rows(db)] == ["jti:", "sig:"]


def test_a_second_process_sees_the_first_ones_record(tmp_path):
    db = tmp_path / "db"
    tok = token(claims("alice", jti="shared"))
    assert login(single_use_module(sqlite_api(db)), "alice", tok)
    assert login(single_use_module(sqlite_api(db)), "alice", tok) is None


def test_unusable_jti_is_refused_before_the_store(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    api = sqlite_api(tmp_path / "db")
    module = single_use_module(api)
    api.run_db_interaction.reset_mock()
    assert login(module, "alice", token(claims("alice", jti="j" * 257))) is None
    assert "JWT login rejected for @alice:test.local: invalid_token_id" in caplog.text
    api.run_db_interaction.assert_not_called()


def test_purge_deletes_only_rows_past_their_time(tmp_path):
    db = tmp_path / "db"
    api = sqlite_api(db)
    module = single_use_module(api)
    # Only the instance that runs background tasks purges, every PURGE_INTERVAL_MS.
    api.looping_background_call.assert_called_once()
    purge, interval = api.looping_background_call.call_args.args
    assert interval == 5 * 60 * 1000
    now = int(time.time())
    assert login(module, "alice", token({"sub": "alice", "exp": now + 10, "jti": "soon"}))
    assert login(module, "alice", token({"sub": "alice", "exp": now + 3600, "jti": "later"}))
    assert run(purge()) == 0
    assert run(module._used_tokens.purge(now + 10 + 60 + 1)) == 1
    assert [key for key, _, _ in rows(db)] == ["jti:later"]


def test_workers_do_not_purge(tmp_path):
    api = sqlite_api(tmp_path / "db")
    api.should_run_background_tasks.return_value = False
    single_use_module(api)
    api.looping_background_call.assert_not_called()


def test_a_dead_tokens_jti_may_be_used_again(tmp_path):
    # Only a token reusing the `jti` of one past its time gets there: that row is not a replay.
    db = tmp_path / "db"
    module = single_use_module(sqlite_api(db))
    now = int(time.time())
    assert login(module, "alice", token(claims("alice", jti="creates-the-table")))
    with sqlite3.connect(db) as connection:
        connection.execute(f"INSERT INTO {TABLE} VALUES ('jti:old', '@alice:test.local', ?)", (now - 1,))
    assert login(module, "alice", token({"sub": "alice", "exp": now + 60, "jti": "old"}))
    assert ("jti:old", "@alice:test.local", now + 120) in rows(db)


def test_database_error_refuses_the_login_at_error_and_recovers(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    db = tmp_path / "db"
    fail: list = []
    module = single_use_module(sqlite_api(db, fail=fail))
    assert login(module, "alice", token(claims("alice", jti="before")))
    fail.append(sqlite3.OperationalError("disk I/O error"))
    tok = token(claims("alice", jti="during-outage"))
    assert login(module, "alice", tok) is None
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(
        "JWT login refused for @alice:test.local" in e and "replay_store_unavailable" in e and "disk I/O" in e
        for e in errors
    ), errors
    fail.clear()
    # Not recorded, so not used: the token still logs in once the database is back.
    assert login(module, "alice", tok) == ("@alice:test.local", None)
    with sqlite3.connect(db) as connection:
        connection.execute(f"DROP TABLE {TABLE}")
    # The table is gone under the module: that login fails closed too, the next one creates it again.
    assert login(module, "alice", token(claims("alice", jti="after-drop"))) is None
    assert "(replay_store_unavailable: OperationalError: no such table" in caplog.text
    assert login(module, "alice", token(claims("alice", jti="after-drop"))) == ("@alice:test.local", None)


def test_daemon_mode_records_the_daemons_replay_key(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    db = tmp_path / "db"
    api = sqlite_api(db)
    module = TokenAuthenticator(TokenAuthenticator.parse_config({"verifier": {"socket": "/nonexistent"}}), api)
    until = int(time.time()) + 120
    answers = iter(
        [
            honest_verdict("alice", replay_key="jti:d", replay_until=until),
            honest_verdict("alice", replay_key="jti:d", replay_until=until),
            honest_verdict("alice"),  # single use off in the daemon
            honest_verdict("alice"),
        ]
    )

    async def verify(tok, user, server_name):
        return {"result": "accepted", **next(answers)}

    module._daemon.verify = verify
    assert login(module, "alice", "a.b.c") == ("@alice:test.local", None)
    assert login(module, "alice", "a.b.c") is None
    assert "JWT login rejected for @alice:test.local: token_replayed" in caplog.text
    assert login(module, "alice", "a.b.c") and login(module, "alice", "a.b.c")
    assert rows(db) == [("jti:d", "@alice:test.local", until)]
