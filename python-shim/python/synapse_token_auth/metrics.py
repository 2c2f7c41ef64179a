"""Prometheus metrics of the Synapse module, in ``prometheus_client``'s default registry.

Synapse serves that registry on each process's ``type: metrics`` listener (``enable_metrics:
true``), so every process (main and each worker) exports the logins it handled itself. The
metrics are created once per process, at import: a second registration of a name in one
registry is an error.

Labels are bounded: the login type, the result, and a reason code from a fixed list (a reason a
daemon sends that is not on it is counted as ``other``). No user id, token or URL.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from synapse_token_auth import _native

#: Codes the module itself gives: refusals of the client's login, and failures an operator has
#: to look at (docs/configuration.md, "Reason codes").
MODULE_REJECT_REASONS = ("unknown_user", "guest_account", "appservice_user", "token_replayed", "external_id_mismatch")
ERROR_REASONS = (
    "daemon_unavailable",
    "daemon_timeout",
    "daemon_error",
    "internal_error",
    "replay_store_unavailable",
    "introspection_failed",
    "registration_webhook_failed",
)
REJECT_REASONS = (*_native.reject_reasons(), *MODULE_REJECT_REASONS)
#: The ``reason`` of a rejection whose code is not on the list (a newer daemon's, say).
OTHER = "other"

# The same bounds as the daemon's verify latency: from a verification with a cached key (tens of
# microseconds) to one that waits for a key fetch or the daemon's timeout.
_LATENCY_BUCKETS = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

LOGINS = Counter(
    "synapse_token_auth_logins",
    "Logins of the module's login types by result: accepted, rejected (the client's token or "
    "login; reason = a reason code) or error (the module could not decide; reason = an error code)",
    ["login_type", "result", "reason"],
)
VERIFY_DURATION = Histogram(
    "synapse_token_auth_verify_duration_seconds",
    "Time to verify a login's token: in-process (key fetches included) or the daemon's round trip",
    buckets=_LATENCY_BUCKETS,
)
KEY_FETCHES = Counter(
    "synapse_token_auth_key_fetches",
    "Fetches of published keys (an OIDC discovery document or a key set) by outcome",
    ["outcome"],
)


def _init(login_type: str) -> None:
    """Every series at 0 from the start, so a rate over one that has not moved is 0, not absent."""
    LOGINS.labels(login_type, "accepted", "")
    for reason in REJECT_REASONS:
        LOGINS.labels(login_type, "rejected", reason)
    LOGINS.labels(login_type, "rejected", OTHER)
    for reason in ERROR_REASONS:
        LOGINS.labels(login_type, "error", reason)
    for outcome in ("ok", "failed"):
        KEY_FETCHES.labels(outcome)


def login_accepted(login_type: str) -> None:
    LOGINS.labels(login_type, "accepted", "").inc()


def login_rejected(login_type: str, reason: str) -> None:
    LOGINS.labels(login_type, "rejected", reason if reason in REJECT_REASONS else OTHER).inc()


def login_failed(login_type: str, reason: str) -> None:
    LOGINS.labels(login_type, "error", reason if reason in ERROR_REASONS else "internal_error").inc()


def key_fetched(ok: bool) -> None:
    KEY_FETCHES.labels("ok" if ok else "failed").inc()


for _login_type in ("com.famedly.login.token", "com.famedly.login.token.oauth", "com.famedly.login.token.oidc"):
    _init(_login_type)
