"""The module's Prometheus metrics in this process (prometheus_client's default registry), with
the ModuleApi stand-in of test_module.py. Per-process metrics of a real Synapse with workers are
checked in test_workers.py."""

from __future__ import annotations

import re

from helpers import REPO, claims, token
from prometheus_client import REGISTRY
from synapse_token_auth import LOGIN_TYPE, metrics
from synapse_token_auth.daemon_client import DaemonUnavailableError, _parse_answer
from test_module import daemon_module, login, make_api, make_module


def logins(result: str, reason: str = "") -> float:
    labels = {"login_type": LOGIN_TYPE, "result": result, "reason": reason}
    return REGISTRY.get_sample_value("synapse_token_auth_logins_total", labels) or 0.0


def verified() -> float:
    return REGISTRY.get_sample_value("synapse_token_auth_verify_duration_seconds_count")


def test_reason_labels_are_the_documented_codes():
    section = (REPO / "docs" / "configuration.md").read_text().split("## Reason codes", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", section, re.M))
    assert documented == set(metrics.REJECT_REASONS) | set(metrics.ERROR_REASONS)
    # Every series exists from the start.
    for reason in metrics.REJECT_REASONS:
        assert (
            REGISTRY.get_sample_value(
                "synapse_token_auth_logins_total", {"login_type": LOGIN_TYPE, "result": "rejected", "reason": reason}
            )
            is not None
        ), reason


def test_accepted_rejected_and_timed():
    module = make_module(make_api({"@alice:test.local": "@alice:test.local"}))
    before = (logins("accepted"), logins("rejected", "expired"), logins("rejected", "malformed_token"), verified())
    assert login(module, "alice", token(claims("alice"))) is not None
    assert login(module, "alice", token({"sub": "alice", "exp": 1})) is None
    assert login(module, "alice", "not a token!") is None  # refused before verification
    after = (logins("accepted"), logins("rejected", "expired"), logins("rejected", "malformed_token"), verified())
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1, 1, 2]


def test_a_reason_the_daemon_made_up_is_counted_as_other():
    api = make_api({"@alice:test.local": "@alice:test.local"})
    module = daemon_module(api)

    async def verify(tok, user, server_name):
        return _parse_answer(403, b'{"reason": "@alice:test.local was here"}')

    module._daemon.verify = verify
    before = logins("rejected", "other")
    assert login(module, "alice", token(claims("alice"))) is None
    assert logins("rejected", "other") == before + 1
    assert not [s for m in REGISTRY.collect() for s in m.samples if "alice" in "".join(s.labels.values())], (
        "no user in a label"
    )


def test_daemon_failures_are_errors_by_code():
    module = daemon_module(make_api())

    async def verify(tok, user, server_name):
        raise DaemonUnavailableError("daemon_timeout", "no answer within 5 s")

    module._daemon.verify = verify
    before = logins("error", "daemon_timeout")
    assert login(module, "alice", token(claims("alice"))) is None
    assert logins("error", "daemon_timeout") == before + 1
