"""Client-supplied text in log lines: bounded, and unable to forge lines."""

from __future__ import annotations


def printable(text: str) -> str:
    """Client-supplied text (user, and a rejected token's alg and kid) in a log line: bounded,
    and with control characters escaped so that it cannot forge log lines."""
    text = text[:255]
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def qualified(user: object, server_name: str) -> str:
    """The login's user as a full user id, for log lines."""
    if not isinstance(user, str):
        return repr(user)[:255]
    return printable(user if user.startswith("@") else f"@{user}:{server_name}")
