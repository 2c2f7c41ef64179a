"""An accepted verdict, checked against the login it answers before anything acts on it.

In daemon mode the verdict comes over a socket or the network, from whatever answers there: a
verdict for another user, or with a field of another type than the daemon's API documents, must
not log anyone in or change an account. Embedded mode runs the same checks on the core's
verdict, so both modes act on exactly the same verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synapse_token_auth import _native
from synapse_token_auth.logtext import printable

_MISSING = object()
_STR = (str,)
_BOOL = (bool,)
_STR_OR_NULL = (str, type(None))
_BOOL_OR_NULL = (bool, type(None))
_INT_OR_NULL = (int, type(None))

#: Longest replay key: `jti:` and a `jti` of at most 256 bytes, or `sig:` and 64 hex digits.
MAX_REPLAY_KEY_BYTES = 4 + 256
#: Latest `replay_until`: the store keeps it in a signed 64-bit column.
MAX_REPLAY_UNTIL = 2**63 - 1

#: field -> (allowed types, may the field be absent). As docs/openapi.yaml documents them.
_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "user_id": (_STR, False),
    "localpart": (_STR, False),
    "may_register": (_BOOL, False),
    "admin": (_BOOL_OR_NULL, True),
    "displayname": (_STR_OR_NULL, True),
    "update_displayname_on_login": (_BOOL, False),
    "alg": (_STR, False),
    "kid": (_STR_OR_NULL, False),
    "key": (_STR, False),
    # Set together with single_use_tokens; absent from a daemon that predates them.
    "replay_key": (_STR_OR_NULL, True),
    "replay_until": (_INT_OR_NULL, True),
}


class InvalidVerdictError(Exception):
    """The verdict does not answer this login, or does not have the documented shape."""


@dataclass(frozen=True)
class Verdict:
    """An accepted token, for the login's own user."""

    user_id: str
    localpart: str
    may_register: bool
    admin: bool | None
    displayname: str | None
    update_displayname_on_login: bool
    alg: str
    kid: str | None
    key: str
    #: With single_use_tokens: record this key, until this time, before the login goes on.
    replay_key: str | None = None
    replay_until: int | None = None


def _storable_key(key: str) -> bool:
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate, valid in JSON
        return False
    return 0 < size <= MAX_REPLAY_KEY_BYTES and "\x00" not in key


def check(answer: dict[str, Any], user: str, server_name: str) -> Verdict:
    """The verdict in ``answer`` if it is well-formed and names the login's ``user``; raises
    InvalidVerdictError (with a loggable description) otherwise."""
    problems = []
    for name, (types, optional) in _FIELDS.items():
        value = answer.get(name, _MISSING)
        if value is _MISSING:
            if not optional:
                problems.append(f"no `{name}`")
        # type(), not isinstance: a bool is an int, and a str subclass is not JSON.
        elif type(value) not in types:
            problems.append(f"`{name}` is a {type(value).__name__}")
    replay_key, replay_until = answer.get("replay_key"), answer.get("replay_until")
    if (replay_key is None) != (replay_until is None):
        problems.append("only one of `replay_key` and `replay_until`")
    if type(replay_key) is str and not _storable_key(replay_key):
        problems.append("`replay_key` is empty, too long or not storable")
    if type(replay_until) is int and not 0 <= replay_until <= MAX_REPLAY_UNTIL:
        problems.append("`replay_until` is out of range")
    if problems:
        raise InvalidVerdictError("malformed verdict: " + ", ".join(problems))

    # The core's own rule (lowercase localpart, server part equal to server_name in any case),
    # so that a login that the verifier may accept is never refused here, and no other is.
    expected = _native.localpart(user, server_name)
    verdict_user = answer["user_id"]
    if (
        expected is None
        or answer["localpart"] != expected
        or not verdict_user.startswith("@")
        or _native.localpart(verdict_user, server_name) != expected
    ):
        raise InvalidVerdictError(
            f"verdict for {printable(verdict_user)} (localpart {printable(answer['localpart'])}), "
            "not for the login's user"
        )
    return Verdict(
        # Built here rather than taken over: the verdict only had to agree with it.
        user_id=f"@{expected}:{server_name}",
        localpart=expected,
        may_register=answer["may_register"],
        admin=answer.get("admin"),
        displayname=answer.get("displayname"),
        update_displayname_on_login=answer["update_displayname_on_login"],
        alg=answer["alg"],
        kid=answer["kid"],
        key=answer["key"],
        replay_key=replay_key,
        replay_until=replay_until,
    )
