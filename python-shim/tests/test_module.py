"""TokenAuthenticator against a ModuleApi stand-in whose methods have Synapse's real signatures
(`create_autospec` of the installed Synapse's ModuleApi): an unexpected call or argument fails.
Every refusal asserts the reason code in the log, not only the ``None``."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from unittest.mock import create_autospec

import pytest
from helpers import SECRET, SERVER_NAME, claims, token
from synapse.module_api import ModuleApi, ProfileInfo
from synapse.module_api.errors import SynapseError
from synapse.types import UserID
from synapse_token_auth import LOGIN_TYPE, TokenAuthenticator
from synapse_token_auth.daemon_client import DaemonUnavailableError, _parse_answer
from twisted.internet import defer
from twisted.python.failure import Failure


def run(coro):
    """Drives a coroutine whose awaits all complete synchronously (as the stand-ins do)."""
    results = []
    defer.ensureDeferred(coro).addBoth(results.append)
    assert results, "coroutine did not complete"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def make_api(
    existing: dict[str, str] | None = None,
    guests: tuple[str, ...] = (),
    app_services: tuple = (),
    displaynames: dict[str, str] | None = None,
):
    """`existing` maps lowercase user ids to their canonical spelling; `guests` are canonical ids
    of guest accounts among them; `displaynames` maps localparts to their profile's display name
    (registration adds to it; `set_displayname` does not change it)."""
    api = create_autospec(ModuleApi, instance=True)
    displaynames = displaynames if displaynames is not None else {}
    api.get_profile_for_user.side_effect = lambda localpart: ProfileInfo(
        avatar_url=None, display_name=displaynames.get(localpart)
    )
    api.server_name = SERVER_NAME
    existing = existing if existing is not None else {}
    api.check_user_exists.side_effect = lambda user_id: defer.succeed(existing.get(user_id.lower()))
    # async in ModuleApi, so an AsyncMock: the side effect is the result.
    api.get_userinfo_by_id.side_effect = lambda user_id: (
        SimpleNamespace(is_guest=user_id in guests, appservice_id=None) if user_id in existing.values() else None
    )
    # Not part of ModuleApi's signature (the module reads Synapse's application services there).
    api._store = SimpleNamespace(get_app_services=lambda: list(app_services))

    def register_user(localpart, displayname=None, emails=None, admin=False):
        user_id = f"@{localpart}:{SERVER_NAME}"
        existing[user_id] = user_id
        if displayname is not None:
            displaynames[localpart] = displayname
        return defer.succeed(user_id)

    api.register_user.side_effect = register_user
    return api


def make_module(api, **config):
    return TokenAuthenticator(TokenAuthenticator.parse_config({"secret": SECRET, **config}), api)


def login(module, user, tok):
    return run(module.check_auth(user, LOGIN_TYPE, {"token": tok}))


def login_accepted_by_synapse(module, user, tok):
    """A login, and Synapse's acceptance of it: the callback it runs once the login passed its
    own checks and got an access token."""
    result = login(module, user, tok)
    if result is not None and result[1] is not None:
        run(result[1]({"user_id": result[0], "access_token": "syt_x", "device_id": "D"}))
    return result


def assert_rejected(caplog, reason, user_id):
    lines = [r.getMessage() for r in caplog.records if "JWT login rejected" in r.getMessage()]
    assert any(f"for {user_id}: {reason}" in line for line in lines), lines


def test_module_registers_the_login_type():
    api = make_api()
    module = make_module(api)
    api.register_password_auth_provider_callbacks.assert_called_once_with(
        auth_checkers={(LOGIN_TYPE, ("token",)): module.check_auth}
    )
    assert module.check_jwt_auth == module.check_auth


def test_module_returns_canonical_user_id_of_existing_user():
    api = make_api({"@alice:test.local": "@Alice:test.local"})
    module = make_module(api)
    assert login(module, "alice", token(claims("alice"))) == ("@Alice:test.local", None)
    assert login(module, "@ALICE:test.local", token(claims("@alice:test.local"))) == ("@Alice:test.local", None)
    api.register_user.assert_not_called()
    api.set_user_admin.assert_not_called()
    api.set_displayname.assert_not_called()


def test_module_registers_new_user_only_when_allowed(caplog):
    caplog.set_level(logging.INFO)
    api = make_api()
    assert login(make_module(api), "bob", token(claims("bob"))) is None
    assert_rejected(caplog, "unknown_user", "@bob:test.local")
    api.register_user.assert_not_called()

    module = make_module(api, allow_registration=True)
    tok = token(claims("bob", displayname="Bob B", admin=True))
    user_id, callback = login(module, "Bob", tok)
    assert user_id == "@bob:test.local"
    # The display name comes with the new account; admin only once Synapse accepts the login.
    api.register_user.assert_called_once_with("bob", displayname="Bob B")
    api.set_user_admin.assert_not_called()
    run(callback({}))
    api.set_user_admin.assert_called_once_with("@bob:test.local", True)
    api.set_displayname.assert_not_called()


def test_module_treats_concurrent_registration_as_success():
    api = make_api()
    calls = []

    def register_user(localpart, displayname=None, emails=None, admin=False):
        calls.append(localpart)
        # another login won the race: the user exists now
        api.check_user_exists.side_effect = lambda user_id: defer.succeed("@carol:test.local")
        api.get_userinfo_by_id.side_effect = lambda user_id: SimpleNamespace(is_guest=False, appservice_id=None)
        return defer.fail(SynapseError(400, "User ID already taken.", errcode="M_USER_IN_USE"))

    api.register_user.side_effect = register_user
    module = make_module(api, allow_registration=True)
    assert login(module, "carol", token(claims("carol"))) == ("@carol:test.local", None)
    assert calls == ["carol"]


def test_module_applies_the_claims_of_a_login_that_lost_the_registration_race():
    api = make_api()

    def register_user(localpart, displayname=None, emails=None, admin=False):
        api.check_user_exists.side_effect = lambda user_id: defer.succeed("@carol:test.local")
        api.get_userinfo_by_id.side_effect = lambda user_id: SimpleNamespace(is_guest=False, appservice_id=None)
        return defer.fail(SynapseError(400, "User ID already taken.", errcode="M_USER_IN_USE"))

    api.register_user.side_effect = register_user
    module = make_module(api, allow_registration=True)
    tok = token(claims("carol", admin=True, displayname="Carol"))
    assert login_accepted_by_synapse(module, "carol", tok)[0] == "@carol:test.local"
    # The winner's token may have said otherwise: this login's claims count, as on any login.
    api.set_user_admin.assert_called_once_with("@carol:test.local", True)
    api.set_displayname.assert_called_once_with(UserID.from_string("@carol:test.local"), "Carol")


def test_module_refuses_when_registration_fails(caplog):
    api = make_api()
    api.register_user.side_effect = lambda *a, **k: defer.fail(
        SynapseError(400, "User ID can only contain ...", errcode="M_INVALID_USERNAME")
    )
    module = make_module(api, allow_registration=True)
    assert login(module, "dave", token(claims("dave"))) is None
    assert "registration failed" in caplog.text


def test_module_applies_admin_claim_to_existing_user():
    api = make_api({"@erin:test.local": "@erin:test.local"})
    module = make_module(api)
    login_accepted_by_synapse(module, "erin", token(claims("erin", admin=True)))
    api.set_user_admin.assert_called_once_with("@erin:test.local", True)
    api.set_user_admin.reset_mock()
    login_accepted_by_synapse(module, "erin", token(claims("erin", admin=False)))
    api.set_user_admin.assert_called_once_with("@erin:test.local", False)


def test_module_changes_nothing_before_synapse_accepts_the_login():
    # Synapse refuses deactivated, locked, unapproved and spam-blocked accounts after the auth
    # checker: until it runs the callback, nothing may change.
    api = make_api({"@erin:test.local": "@erin:test.local"})
    user_id, callback = login(make_module(api), "erin", token(claims("erin", admin=True, displayname="E")))
    assert user_id == "@erin:test.local" and callback is not None
    api.set_user_admin.assert_not_called()
    api.set_displayname.assert_not_called()
    run(callback({}))
    api.set_user_admin.assert_called_once_with("@erin:test.local", True)
    api.set_displayname.assert_called_once_with(UserID.from_string("@erin:test.local"), "E")


def test_module_claims_callback_never_raises(caplog):
    api = make_api({"@erin:test.local": "@erin:test.local"})
    api.set_user_admin.side_effect = RuntimeError("database is gone")
    _, callback = login(make_module(api), "erin", token(claims("erin", admin=True)))
    assert run(callback({})) is None
    assert "could not be applied" in caplog.text and "database is gone" in caplog.text


def test_module_rejects_non_boolean_admin_claim(caplog):
    caplog.set_level(logging.INFO)
    api = make_api({"@erin:test.local": "@erin:test.local"})
    assert login(make_module(api), "erin", token(claims("erin", admin="true"))) is None
    assert_rejected(caplog, "invalid_admin_claim", "@erin:test.local")
    api.set_user_admin.assert_not_called()


def test_module_applies_displayname_on_login_unless_disabled():
    api = make_api({"@frank:test.local": "@frank:test.local"})
    login_accepted_by_synapse(make_module(api), "frank", token(claims("frank", displayname="Frank")))
    api.set_displayname.assert_called_once_with(UserID.from_string("@frank:test.local"), "Frank")
    api.set_displayname.reset_mock()
    module = make_module(api, update_displayname_on_login=False)
    login_accepted_by_synapse(module, "frank", token(claims("frank", displayname="F")))
    api.set_displayname.assert_not_called()


def test_module_leaves_a_display_name_that_is_already_set_alone():
    # Concurrent first logins of one user all carry the same name: the registration set it, and
    # the other logins must not write it again (on PostgreSQL those writes conflict).
    api = make_api({"@frank:test.local": "@frank:test.local"}, displaynames={"frank": "Frank"})
    module = make_module(api)
    login_accepted_by_synapse(module, "frank", token(claims("frank", displayname="Frank")))
    # Synapse stores the name stripped of surrounding white space.
    login_accepted_by_synapse(module, "frank", token(claims("frank", displayname=" Frank ")))
    api.get_profile_for_user.assert_called_with("frank")
    api.set_displayname.assert_not_called()
    # A different name is set as the token says it.
    login_accepted_by_synapse(module, "frank", token(claims("frank", displayname="Frank F.")))
    api.set_displayname.assert_called_once_with(UserID.from_string("@frank:test.local"), "Frank F.")


@pytest.mark.parametrize(
    ("current", "claimed", "set_to"),
    [(None, "Gina", "Gina"), ("Gina", "", ""), (None, "", None), (None, "  ", None)],
)
def test_module_sets_a_display_name_only_when_it_changes(current, claimed, set_to):
    # Synapse stores an empty (or blank) name as none: clearing one that is set is a change.
    displaynames = {"gina": current} if current is not None else {}
    api = make_api({"@gina:test.local": "@gina:test.local"}, displaynames=displaynames)
    login_accepted_by_synapse(make_module(api), "gina", token(claims("gina", displayname=claimed)))
    if set_to is None:
        api.set_displayname.assert_not_called()
    else:
        api.set_displayname.assert_called_once_with(UserID.from_string("@gina:test.local"), set_to)


def test_module_reads_the_profile_of_the_canonical_user():
    api = make_api({"@alice:test.local": "@Alice:test.local"}, displaynames={"Alice": "Alice"})
    login_accepted_by_synapse(make_module(api), "alice", token(claims("alice", displayname="Alice")))
    api.get_profile_for_user.assert_called_once_with("Alice")
    api.set_displayname.assert_not_called()


def test_module_logs_a_profile_that_cannot_be_read(caplog):
    api = make_api({"@frank:test.local": "@frank:test.local"})
    api.get_profile_for_user.side_effect = RuntimeError("database is gone")
    _, callback = login(make_module(api), "frank", token(claims("frank", displayname="Frank")))
    assert run(callback({})) is None
    assert "could not be applied" in caplog.text and "database is gone" in caplog.text
    api.set_displayname.assert_not_called()


@pytest.mark.parametrize(
    ("user", "tok", "reason", "logged_user"),
    [
        ("alice", token(claims("alice"), secret=SECRET.replace("0", "1")), "bad_signature", "@alice:test.local"),
        ("alice", token(claims("alice"), alg="HS256"), "algorithm_not_allowed", "@alice:test.local"),
        ("alice", token({"sub": "alice", "exp": 1}), "expired", "@alice:test.local"),
        ("alice", token({"sub": "alice"}), "missing_expiry", "@alice:test.local"),
        ("alice", token(claims("alice", nbf=4_000_000_000)), "not_yet_valid", "@alice:test.local"),
        ("alice", token(claims("@alice:other.example")), "foreign_server", "@alice:test.local"),
        ("alice", token(claims("bob")), "subject_mismatch", "@alice:test.local"),
        ("alice", "garbage", "malformed_token", "@alice:test.local"),
        ("alice", token(claims("alice", type="chatbox")), "chatbox_localpart", "@alice:test.local"),
    ],
)
def test_module_rejects_with_reason(caplog, user, tok, reason, logged_user):
    caplog.set_level(logging.INFO)
    api = make_api({"@alice:test.local": "@alice:test.local"})
    assert login(make_module(api), user, tok) is None
    assert_rejected(caplog, reason, logged_user)
    assert tok not in caplog.text, "token in the log"
    api.set_user_admin.assert_not_called()


def test_module_escapes_client_text_in_log_lines(caplog):
    caplog.set_level(logging.INFO)
    api = make_api()
    forged = token(claims("alice"), header={"kid": "k\nJWT login accepted for @admin:test.local"}, alg="HS256")
    assert login(make_module(api), "al\nice", forged) is None
    lines = [r.getMessage() for r in caplog.records if "JWT login rejected" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0], lines
    assert "al\\nice" in lines[0] and "k\\nJWT" in lines[0], lines


def test_module_checks_audience_and_issuer_when_configured(caplog):
    caplog.set_level(logging.INFO)
    api = make_api({"@alice:test.local": "@alice:test.local"})
    module = make_module(api, audiences=["synapse"], issuer="https://idp")
    assert login(module, "alice", token(claims("alice", aud="synapse", iss="https://idp")))
    assert login(module, "alice", token(claims("alice", aud="other", iss="https://idp"))) is None
    assert_rejected(caplog, "wrong_audience", "@alice:test.local")


def test_module_verifies_asymmetric_tokens():
    from helpers import KEYS

    api = make_api({"@alice:test.local": "@alice:test.local"})
    config = TokenAuthenticator.parse_config({"keyfile": str(KEYS / "rsa.crt"), "algorithm": "RS256"})
    module = TokenAuthenticator(config, api)
    assert login(module, "alice", token(claims("alice"), alg="RS256")) == ("@alice:test.local", None)
    config = TokenAuthenticator.parse_config({"keyfile": str(KEYS / "p256.pub"), "algorithm": "ES256"})
    module = TokenAuthenticator(config, api)
    assert login(module, "alice", token(claims("alice"), alg="ES256")) == ("@alice:test.local", None)


def test_module_accepts_additional_keys_during_rotation_and_logs_which_key(caplog):
    caplog.set_level(logging.INFO)
    old = "old-secret-for-rotation-0123456789abcdef0123456789abcdef0123456789"
    api = make_api({"@alice:test.local": "@alice:test.local"})
    module = make_module(api, additional_keys=[{"secret": old, "key_id": "2025"}])
    assert login(module, "alice", token(claims("alice"))) == ("@alice:test.local", None)
    assert login(module, "alice", token(claims("alice"), secret=old, header={"kid": "2025"})) == (
        "@alice:test.local",
        None,
    )
    accepted = [r.getMessage() for r in caplog.records if "JWT login accepted" in r.getMessage()]
    assert "key=primary" in accepted[0] and "kid=2025 key=additional_keys[0]" in accepted[1], accepted
    # The old key is bound to its kid: without it, only the primary key is tried.
    assert login(module, "alice", token(claims("alice"), secret=old)) is None
    assert_rejected(caplog, "bad_signature", "@alice:test.local")


def test_module_config_error_names_the_additional_key():
    with pytest.raises(Exception, match=r"additional_keys\[0\]\.secret"):
        TokenAuthenticator.parse_config({"secret": SECRET, "additional_keys": [{"secret": "short"}]})


def test_module_ignores_other_login_types_and_missing_token(caplog):
    caplog.set_level(logging.INFO)
    api = make_api()
    module = make_module(api)
    assert run(module.check_auth("alice", "m.login.password", {"password": "x"})) is None
    assert run(module.check_auth("alice", LOGIN_TYPE, {})) is None
    assert run(module.check_auth("alice", LOGIN_TYPE, {"token": 42})) is None
    assert_rejected(caplog, "malformed_token", "@alice:test.local")


def test_module_never_raises_into_synapse(caplog):
    api = make_api()
    api.check_user_exists.side_effect = lambda user_id: defer.fail(RuntimeError("database is gone"))
    module = make_module(api)
    assert login(module, "alice", token(claims("alice"))) is None
    assert "unexpected error" in caplog.text and "database is gone" in caplog.text


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (200, b"not json", "daemon_error"),
        (200, b"[]", "daemon_error"),
        (200, b'{"user_id": 5}', "daemon_error"),
        (500, b'{"reason": "expired"}', "daemon_error"),
        (403, b"{}", "daemon_error"),
        (200, b"x" * (65 * 1024), "daemon_error"),
    ],
)
def test_daemon_answers_that_are_not_verdicts_fail_closed(status, body, reason):
    with pytest.raises(DaemonUnavailableError) as e:
        _parse_answer(status, body)
    assert e.value.reason == reason


def test_daemon_answers_that_are_verdicts():
    ok = _parse_answer(200, b'{"user_id": "@a:b", "localpart": "a", "may_register": false}')
    assert ok["result"] == "accepted"
    no = _parse_answer(403, b'{"reason": "expired"}')
    assert no == {"result": "rejected", "reason": "expired", "alg": None, "kid": None}


# --- Daemon mode: the module checks every verdict against its own login -----------------------


def daemon_module(api, answer: dict | None = None, calls: list | None = None):
    """A daemon-mode module whose daemon answers 200 with `answer` (or, without one, the verdict
    a real daemon gives for the login), as the daemon client parses it."""
    module = TokenAuthenticator(TokenAuthenticator.parse_config({"verifier": {"socket": "/nonexistent"}}), api)

    async def verify(tok, user, server_name):
        if calls is not None:
            calls.append((tok, user))
        body = answer if answer is not None else honest_verdict(user.lower().lstrip("@").split(":")[0])
        return _parse_answer(200, json.dumps(body).encode())

    module._daemon.verify = verify
    return module


def honest_verdict(name: str, **overrides) -> dict:
    return {
        "user_id": f"@{name}:{SERVER_NAME}",
        "localpart": name,
        "may_register": False,
        "admin": None,
        "displayname": None,
        "update_displayname_on_login": True,
        "alg": "HS512",
        "kid": None,
        "key": "primary",
        **overrides,
    }


def assert_daemon_error(caplog, user_id):
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(f"JWT login refused for {user_id}" in e and "daemon_error" in e for e in errors), errors


def test_daemon_verdict_for_the_login_user_is_accepted():
    api = make_api({"@alice:test.local": "@alice:test.local"})
    module = daemon_module(api, honest_verdict("alice", admin=True, displayname="Alice", kid="k1"))
    assert login_accepted_by_synapse(module, "@ALICE:test.local", "a.b.c")[0] == "@alice:test.local"
    api.set_user_admin.assert_called_once_with("@alice:test.local", True)


IMPOSTOR_VERDICTS = {
    "another user": honest_verdict("victim", admin=True),
    "another user, matching localpart": honest_verdict("alice", user_id="@victim:test.local"),
    "another server": honest_verdict("alice", user_id="@alice:other.example"),
    "bare user_id": honest_verdict("alice", user_id="alice"),
    "localpart not lowercase": honest_verdict("alice", localpart="Alice"),
    "admin as a string": honest_verdict("alice", admin="true"),
    "admin as a number": honest_verdict("alice", admin=1),
    "may_register as a string": honest_verdict("alice", may_register="yes"),
    "displayname as a number": honest_verdict("alice", displayname=5),
    "displayname as a list": honest_verdict("alice", displayname=["Alice"]),
    "update_displayname_on_login null": honest_verdict("alice", update_displayname_on_login=None),
    "alg null": honest_verdict("alice", alg=None),
    "kid as a number": honest_verdict("alice", kid=7),
    "key missing": {k: v for k, v in honest_verdict("alice").items() if k != "key"},
    "may_register missing": {k: v for k, v in honest_verdict("alice").items() if k != "may_register"},
    "replay_key without replay_until": honest_verdict("alice", replay_key="jti:a"),
    "replay_until without replay_key": honest_verdict("alice", replay_until=2_000_000_000),
    "replay_key as a number": honest_verdict("alice", replay_key=1, replay_until=2_000_000_000),
    "replay_until as a string": honest_verdict("alice", replay_key="jti:a", replay_until="2000000000"),
    "replay_until as a boolean": honest_verdict("alice", replay_key="jti:a", replay_until=True),
    "replay_until past 2^63": honest_verdict("alice", replay_key="jti:a", replay_until=2**63),
    "replay_key empty": honest_verdict("alice", replay_key="", replay_until=2_000_000_000),
    "replay_key too long": honest_verdict("alice", replay_key="jti:" + "a" * 257, replay_until=2_000_000_000),
    "replay_key with NUL": honest_verdict("alice", replay_key="jti:a\x00", replay_until=2_000_000_000),
}


@pytest.mark.parametrize("answer", IMPOSTOR_VERDICTS.values(), ids=IMPOSTOR_VERDICTS.keys())
def test_daemon_verdicts_that_do_not_answer_the_login_are_refused(caplog, answer):
    api = make_api({"@alice:test.local": "@alice:test.local", "@victim:test.local": "@victim:test.local"})
    assert login(daemon_module(api, answer), "alice", "garbage") is None
    assert_daemon_error(caplog, "@alice:test.local")
    api.check_user_exists.assert_not_called()
    api.set_user_admin.assert_not_called()
    api.register_user.assert_not_called()


def test_daemon_verdict_for_an_invalid_login_user_is_refused(caplog):
    # The core refuses such a login (invalid_user): a verdict for it is not the daemon's.
    api = make_api()
    assert login(daemon_module(api, honest_verdict("al ice")), "al ice", "a.b.c") is None
    assert_daemon_error(caplog, "@al ice:test.local")


# --- Input the verifier need not see ---------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "tok", "reason", "logged_user"),
    [
        ("alice", "a" * (8 * 1024 + 1), "token_too_large", "@alice:test.local"),
        ("alice", "a" * (20 * 1024), "token_too_large", "@alice:test.local"),
        ("alice", "eyJhbGciOiJIUzI1NiJ9.e30.\ud800", "malformed_token", "@alice:test.local"),
        ("alice", "a.b.c\u00e9", "malformed_token", "@alice:test.local"),
        ("alice", "a.b.c\x00" * 1000, "malformed_token", "@alice:test.local"),
        ("alice", '"' * 8000, "malformed_token", "@alice:test.local"),
        ("\ud800", "a.b.c", "invalid_user", "@\\ud800:test.local"),
        ("a" * 256, "a.b.c", "invalid_user", "@" + "a" * 254),
        ("\u00e9" * 128, "a.b.c", "invalid_user", "@" + "\u00e9" * 128 + ":test.local"),
        (["alice"], "a.b.c", "invalid_user", "['alice']"),
    ],
    ids=[
        "token over 8 KiB",
        "token over the daemon's body bound",
        "token with a lone surrogate",
        "token not ASCII",
        "token with control characters",
        "token of quotes",
        "user with a lone surrogate",
        "user over 255 bytes",
        "user over 255 bytes in UTF-8",
        "user not a string",
    ],
)
@pytest.mark.parametrize("mode", ["embedded", "daemon"])
def test_module_refuses_input_no_verifier_accepts_before_asking(caplog, mode, user, tok, reason, logged_user):
    caplog.set_level(logging.INFO)
    api = make_api({"@alice:test.local": "@alice:test.local"})
    calls: list = []
    module = make_module(api) if mode == "embedded" else daemon_module(api, calls=calls)
    assert run(module.check_auth(user, LOGIN_TYPE, {"token": tok})) is None
    assert_rejected(caplog, reason, logged_user)
    assert calls == [], "the daemon was asked"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


# --- Accounts that Synapse keeps for others ----------------------------------------------------


def test_module_refuses_guest_accounts(caplog):
    caplog.set_level(logging.INFO)
    api = make_api({"@1:test.local": "@1:test.local"}, guests=("@1:test.local",))
    assert login_accepted_by_synapse(make_module(api), "1", token(claims("1", admin=True))) is None
    assert_rejected(caplog, "guest_account", "@1:test.local")
    api.set_user_admin.assert_not_called()


def test_module_fails_closed_without_a_list_of_application_services(caplog):
    api = make_api({"@alice:test.local": "@alice:test.local"})
    api._store = SimpleNamespace()
    assert login(make_module(api), "alice", token(claims("alice"))) is None
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("JWT login refused for @alice:test.local" in e and "internal_error" in e for e in errors), errors
