"""Accounts a JWT login must leave alone, against a real Synapse.

Synapse refuses some logins after the module's auth checker has accepted the token: deactivated
(also erased) and locked accounts, logins a spam checker blocks, accounts awaiting approval. Such a
login must not change the account. And some accounts are not for JWT logins at all: guests and
the users of application services. The accounts are made through Synapse's own APIs and config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import SECRET, claims, token
from homeserver import Homeserver, wait_until

AS_TOKEN = "test-only-as-token"


def jwt(sub: str, **extra) -> str:
    return token(claims(sub, **extra))


def user(hs, user_id: str) -> dict:
    status, body = hs.request("GET", f"/_synapse/admin/v2/users/{user_id}", access_token=hs.admin_token)
    assert status == 200, body
    return body


def displayname(hs, user_id: str) -> str | None:
    status, body = hs.request("GET", f"/_matrix/client/v3/profile/{user_id}")
    return body.get("displayname") if status == 200 else None


def create_user(hs, localpart: str, **fields) -> str:
    """Creates the user through the admin API, then sets `fields` (locked, approved): Synapse
    applies those to existing users only."""
    user_id = f"@{localpart}:test.local"
    path = f"/_synapse/admin/v2/users/{user_id}"
    status, body = hs.request("PUT", path, {"displayname": localpart.title()}, hs.admin_token)
    assert status == 201, body
    if fields:
        status, body = hs.request("PUT", path, fields, hs.admin_token)
        assert status == 200, body
        assert all(body[k] == v for k, v in fields.items()), body
    return user_id


def assert_logged(hs, line: str) -> None:
    wait_until(lambda: line in hs.log_text(), 5, f"log line {line!r}")


@pytest.fixture(scope="module")
def hs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("accounts")
    registration = directory / "bridge.yaml"
    registration.write_text(
        json.dumps(
            {
                "id": "bridge",
                "url": None,
                "as_token": AS_TOKEN,
                "hs_token": "test-only-hs-token",
                "sender_localpart": "bridgebot",
                "namespaces": {"users": [{"exclusive": True, "regex": "@_bridge_.*:test\\.local"}]},
                "rate_limited": False,
            }
        )
    )
    extra = {
        "allow_guest_access": True,
        "app_service_config_files": [str(registration)],
        "modules": [
            {
                "module": "synapse_token_auth.TokenAuthenticator",
                "config": {"secret": SECRET, "allow_registration": True},
            },
            {"module": "login_blocker.LoginBlocker", "config": {"users": ["@blocked:test.local"]}},
        ],
    }
    server = Homeserver(directory, {}, extra=extra, pythonpath=Path(__file__).parent)
    server.start()
    server.admin_token = server.register_with_shared_secret("root", admin=True)
    yield server
    server.stop()


def test_deactivated_and_erased_account_stays_as_it_is(hs):
    user_id = create_user(hs, "gone")
    status, body = hs.request("POST", f"/_synapse/admin/v1/deactivate/{user_id}", {"erase": True}, hs.admin_token)
    assert status == 200, body
    before = displayname(hs, user_id)
    assert before != "Back again"

    status, body = hs.login("gone", jwt("gone", admin=True, displayname="Back again"))
    assert (status, body.get("errcode")) == (403, "M_USER_DEACTIVATED"), body
    assert user(hs, user_id)["admin"] is False, "a deactivated account became server admin"
    assert displayname(hs, user_id) == before, "the erased display name came back"


def test_locked_account_stays_as_it_is(hs):
    user_id = create_user(hs, "locked", locked=True)
    status, body = hs.login("locked", jwt("locked", admin=True, displayname="Unlocked?"))
    assert (status, body.get("errcode")) == (401, "M_USER_LOCKED"), body
    assert user(hs, user_id)["admin"] is False
    assert displayname(hs, user_id) == "Locked"


def test_login_blocked_by_a_spam_checker_changes_nothing(hs):
    user_id = create_user(hs, "blocked")
    status, body = hs.login("blocked", jwt("blocked", admin=True, displayname="Not blocked"))
    assert status == 403, body
    assert user(hs, user_id)["admin"] is False
    assert displayname(hs, user_id) == "Blocked"


def test_accepted_login_still_applies_the_claims(hs):
    user_id = create_user(hs, "welcome")
    status, body = hs.login("welcome", jwt("welcome", admin=True, displayname="Welcome Back"))
    assert (status, body.get("user_id")) == (200, user_id), body
    assert user(hs, user_id)["admin"] is True
    assert displayname(hs, user_id) == "Welcome Back"
    status, body = hs.login("welcome", jwt("welcome", admin=False))
    assert status == 200, body
    assert user(hs, user_id)["admin"] is False


def test_guest_account_is_refused(hs):
    status, body = hs.request("POST", "/_matrix/client/v3/register?kind=guest", {})
    assert status == 200, body
    guest = body["user_id"]
    localpart = guest[1:].split(":")[0]
    status, body = hs.login(localpart, jwt(localpart, admin=True))
    assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), body
    assert_logged(hs, f"JWT login rejected for {guest}: guest_account")
    assert user(hs, guest)["admin"] is False


def test_application_service_users_are_refused(hs):
    status, body = hs.request(
        "POST",
        "/_matrix/client/v3/register",
        {"type": "m.login.application_service", "username": "_bridge_alice", "inhibit_login": True},
        AS_TOKEN,
    )
    assert status == 200, body
    # registered by the bridge, not yet registered, and the bridge's own sender
    for localpart in ("_bridge_alice", "_bridge_bob", "bridgebot"):
        status, body = hs.login(localpart, jwt(localpart))
        assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), (localpart, body)
        assert_logged(hs, f"JWT login rejected for @{localpart}:test.local: appservice_user")
    status, _ = hs.request("GET", "/_synapse/admin/v2/users/@_bridge_bob:test.local", access_token=hs.admin_token)
    assert status == 404, "the module registered a user in the bridge's namespace"


def test_refusals_are_info_lines(hs):
    text = hs.log_text()
    assert "Failed to run module API callback" not in text
    assert "Traceback" not in text
    assert not [line for line in text.splitlines() if " synapse_token_auth" in line and " ERROR " in line]


@pytest.fixture(scope="module")
def hs_approval(tmp_path_factory):
    directory = tmp_path_factory.mktemp("approval")
    module_config = {"secret": SECRET, "allow_registration": True}
    # The admin first: with approval required, a new account (this one too) gets no access token.
    server = Homeserver(directory, module_config)
    server.start()
    admin_token = server.register_with_shared_secret("root", admin=True)
    server.stop()
    extra = {"experimental_features": {"msc3866": {"enabled": True, "require_approval_for_new_accounts": True}}}
    server = Homeserver(directory, module_config, extra=extra)
    server.start()
    server.admin_token = admin_token
    yield server
    server.stop()


def test_new_account_awaiting_approval_is_not_made_admin(hs_approval):
    hs = hs_approval
    status, body = hs.login("pending", jwt("pending", admin=True, displayname="Pending"))
    assert (status, body.get("errcode")) == (403, "ORG.MATRIX.MSC3866_USER_AWAITING_APPROVAL"), body
    account = user(hs, "@pending:test.local")
    assert account["approved"] is False
    assert account["admin"] is False, "an account Synapse did not let in became server admin"


def test_existing_account_awaiting_approval_stays_as_it_is(hs_approval):
    hs = hs_approval
    user_id = create_user(hs, "waiting", approved=False)
    status, body = hs.login("waiting", jwt("waiting", admin=True, displayname="Approved?"))
    assert (status, body.get("errcode")) == (403, "ORG.MATRIX.MSC3866_USER_AWAITING_APPROVAL"), body
    assert user(hs, user_id)["admin"] is False
    assert displayname(hs, user_id) == "Waiting"
