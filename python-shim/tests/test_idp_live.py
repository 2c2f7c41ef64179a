"""Keys published by a real OpenID provider (node-oidc-provider, tests/idp), through a real Synapse:
embedded mode (Synapse's HTTP client fetches) and daemon mode (the daemon fetches), with tokens the
provider issued. Discovery, registration, key rotation, the provider down, hanging or lying, and a
storm of unknown `kid`s.

Each mode has its own provider, Synapse (and daemon). The refetch cooldown is 1 s and the fetch
timeout 2 s so that the cache's transitions fit in a test run; every test waits out the cooldown
before it counts fetches."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import token
from homeserver import Daemon, Homeserver, wait_until
from idp import IdP, new_key, public, token_header
from prometheus_client.parser import text_string_to_metric_families

COOLDOWN = 1
FETCH_TIMEOUT = 2
TUNING = {"jwks_refetch_cooldown_seconds": COOLDOWN, "jwks_fetch_timeout_seconds": FETCH_TIMEOUT}


def policy(issuer: str, allow_registration: bool = True) -> dict:
    return {
        "oidc_issuer": issuer,
        "audiences": ["matrix"],
        "algorithm": ["RS256", "ES256", "EdDSA"],
        "allow_registration": allow_registration,
        **TUNING,
    }


def toml(settings: dict) -> str:
    return "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items()) + "[server]\nworkers = 1\n"


class Setup:
    """A provider, a Synapse and, in daemon mode, the daemon between them."""

    def __init__(
        self, mode: str, directory, keys: list[dict], start_provider: bool = True, jwks_url: str | None = None
    ) -> None:
        self.mode = mode
        self.keys = keys
        self.idp = IdP(keys)
        if not start_provider:
            self.idp.stop()
        self.daemon = None
        settings = policy(self.idp.issuer)
        if jwks_url:
            del settings["oidc_issuer"]
            settings.update(jwks_url=jwks_url, issuer=self.idp.issuer)
        if mode == "daemon":
            self.daemon = Daemon(directory, toml(settings))
            self.daemon.start()
            module_config = {"verifier": {"socket": str(self.daemon.socket), "timeout_seconds": 10}}
        else:
            module_config = settings
        self.hs = Homeserver(directory, module_config, metrics=True)
        self.hs.start()

    def close(self) -> None:
        self.hs.stop()
        if self.daemon:
            self.daemon.stop()
        if self.idp.proc.poll() is None:
            self.idp.stop()

    def fetch_log(self) -> str:
        """Where the fetch outcomes are logged: Synapse's log, or the daemon's."""
        return self.daemon.log.read_text() if self.daemon else self.hs.log_text()

    def login(self, user: str, tok: str) -> tuple[int, dict]:
        return self.hs.login(user, tok)

    def module_fetches(self) -> dict[str, float]:
        """Synapse's `synapse_token_auth_key_fetches_total` by outcome: the module's own fetches
        (embedded mode; in daemon mode the daemon fetches and these stay at 0)."""
        return {
            sample.labels["outcome"]: sample.value
            for family in text_string_to_metric_families(self.hs.metrics())
            for sample in family.samples
            if sample.name == "synapse_token_auth_key_fetches_total"
        }

    def assert_refused(self, user: str, tok: str, reason: str) -> None:
        status, body = self.login(user, tok)
        assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), body
        line = f"JWT login rejected for @{user}:test.local: {reason}"
        wait_until(lambda: line in self.hs.log_text(), 5, f"log line {line!r}")

    def settle(self) -> None:
        """Lets the cooldown of the last fetch pass: the cache counts whole seconds and waits
        for a whole cooldown, so the next fetch may come up to a second later than COOLDOWN."""
        time.sleep(COOLDOWN + 1.1)

    def rotate(self, *keys: dict) -> None:
        self.keys = list(keys)
        self.idp.set_keys(self.keys)


@pytest.fixture(scope="module", params=["embedded", "daemon"])
def setup(request, tmp_path_factory):
    s = Setup(
        request.param, tmp_path_factory.mktemp(request.param), [new_key("RS256", "rsa-1"), new_key("ES256", "ec-1")]
    )
    yield s
    s.close()


def test_provider_tokens_log_in_and_register_through_discovery(setup):
    for alg in ("RS256", "ES256"):
        tok = setup.idp.user_token("alice", f"urn:matrix:jwt:{alg}")
        status, body = setup.login("alice", tok)
        assert status == 200, body
        assert body["user_id"] == "@alice:test.local"
    # Discovery first, then the key set, logged with the kids found.
    log = setup.fetch_log()
    assert "/.well-known/openid-configuration: key set at" in log
    assert "kids added: rsa-1, ec-1" in log
    # A token for another audience, from the same provider, is refused.
    other = setup.idp.user_token("alice", "urn:matrix:jwt:RS256:aud=another-app")
    setup.assert_refused("alice", other, "wrong_audience")


def test_rotation_new_kid_logs_in_after_exactly_one_refetch(setup):
    old = setup.idp.user_token("alice", "urn:matrix:jwt:RS256")
    rsa2 = new_key("RS256", "rsa-2")
    setup.rotate(rsa2, *setup.keys)  # rsa-2 signs from now on, rsa-1 stays published
    new = setup.idp.user_token("alice", "urn:matrix:jwt:RS256")
    assert token_header(new)["kid"] == "rsa-2"
    setup.settle()
    before = setup.idp.requests("/jwks")
    fetches = setup.module_fetches()
    status, body = setup.login("alice", new)
    assert status == 200, body
    assert setup.idp.requests("/jwks") == before + 1
    # Synapse's metrics count the module's fetch (embedded mode) as ok.
    counted = setup.module_fetches()
    assert counted["ok"] - fetches["ok"] == (1 if setup.mode == "embedded" else 0)
    assert counted["failed"] == fetches["failed"]
    # The old key is still published and cached: no fetch.
    status, body = setup.login("alice", old)
    assert status == 200, body
    assert setup.idp.requests("/jwks") == before + 1


def test_a_storm_of_unknown_kids_costs_one_fetch_per_cooldown(setup):
    stranger = new_key("RS256", "rsa-storm")
    setup.rotate(stranger, *setup.keys)
    tok = setup.idp.user_token("alice", "urn:matrix:jwt:RS256")
    setup.rotate(*[k for k in setup.keys if k["kid"] != "rsa-storm"])  # withdrawn before anyone fetched
    setup.settle()
    before = setup.idp.requests("/jwks")
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda _: setup.login("alice", tok), range(40)))
    elapsed = time.monotonic() - started
    assert {status for status, _ in results} == {403}, results
    took = setup.idp.requests("/jwks") - before
    # One fetch, and one more for each cooldown the storm outlasted.
    assert 1 <= took <= 1 + int(elapsed // COOLDOWN), f"{took} fetches for 40 logins in {elapsed:.2f} s"
    wait_until(lambda: "JWT login rejected for @alice:test.local: unknown_key_id" in setup.hs.log_text(), 5, "log")


def test_provider_down_cached_keys_keep_working(setup):
    tok = setup.idp.user_token("alice", "urn:matrix:jwt:ES256")
    setup.idp.stop()
    try:
        status, body = setup.login("alice", tok)
        assert status == 200, body
        # A new kid cannot be fetched: refused, and Synapse answers the rest.
        setup.settle()
        unknown = token(
            {"sub": "alice", "aud": "matrix", "iss": setup.idp.issuer, "exp": int(time.time()) + 60},
            alg="RS256",
            header={"kid": "not-published"},
        )
        fetches = setup.module_fetches()
        setup.assert_refused("alice", unknown, "unknown_key_id")
        assert "failed" in setup.fetch_log()
        failed = setup.module_fetches()["failed"] - fetches["failed"]
        assert failed == (1 if setup.mode == "embedded" else 0)
    finally:
        setup.idp.start()


def test_hostile_sets_are_refused_and_odd_keys_ignored(setup):
    real = [public(k) for k in setup.keys]
    fresh = new_key("RS256", "rsa-hostile")
    setup.rotate(fresh, *setup.keys)
    tok = setup.idp.user_token("alice", "urn:matrix:jwt:RS256")
    hostile = [
        ("garbage", {"mode": "garbage"}),
        ("keyless", {"mode": "body", "body": {"keys": []}}),
        ("oversized", {"mode": "body", "body": {"keys": real, "padding": "x" * (1024 * 1024)}}),
        (
            "oct and enc only",
            {
                "mode": "body",
                "body": {
                    "keys": [
                        {"kty": "oct", "kid": "rsa-hostile", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"},
                        {**public(fresh), "use": "enc"},
                    ]
                },
            },
        ),
        ("500", {"mode": "500"}),
    ]
    try:
        for case, fault in hostile:
            setup.idp.fault("/jwks", **fault)
            setup.settle()
            status, body = setup.login("alice", tok)
            assert status == 403, (case, body)
        assert "the answer is larger than" in setup.fetch_log()
        # Beside a usable key, oct and enc keys are ignored and the usable one works.
        setup.idp.fault(
            "/jwks",
            "body",
            body={
                "keys": [
                    {"kty": "oct", "kid": "x", "k": "c2VjcmV0"},
                    {**public(fresh), "kid": "enc", "use": "enc"},
                    *real,
                    public(fresh),
                ]
            },
        )
        setup.settle()
        status, body = setup.login("alice", tok)
        assert status == 200, body
        assert "symmetric (oct) key" in setup.fetch_log()
        assert "not for signatures" in setup.fetch_log()
    finally:
        setup.idp.fault("/jwks", "off")


class _Trap(BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self):  # noqa: N802
        type(self).hits += 1
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_keys_named_by_the_token_are_never_fetched_or_trusted(setup):
    trap = ThreadingHTTPServer(("127.0.0.1", 0), _Trap)
    threading.Thread(target=trap.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{trap.server_address[1]}/keys"
    try:
        pem_jwk = {"kty": "RSA", "n": "AQAB", "e": "AQAB"}
        header = {"kid": "attacker", "jku": url, "x5u": url, "jwk": pem_jwk, "x5c": ["MIIB"]}
        claims = {"sub": "alice", "aud": "matrix", "iss": setup.idp.issuer, "exp": int(time.time()) + 60}
        tok = token(claims, alg="RS256", header=header)  # signed with a key the provider never published
        setup.settle()
        setup.assert_refused("alice", tok, "unknown_key_id")
        assert _Trap.hits == 0
    finally:
        trap.shutdown()


def test_a_hanging_provider_does_not_slow_synapse(setup):
    fresh = new_key("ES256", "ec-hang")
    setup.rotate(fresh, *setup.keys)
    tok = setup.idp.user_token("alice", "urn:matrix:jwt:ES256")
    setup.idp.fault("/jwks", "hang")
    setup.settle()
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            started = time.monotonic()
            login = pool.submit(setup.login, "alice", tok)
            time.sleep(0.2)
            latencies = []
            while not login.done():
                t0 = time.monotonic()
                assert setup.hs.request("GET", "/_matrix/client/versions")[0] == 200
                latencies.append(time.monotonic() - t0)
                time.sleep(0.05)
            status, body = login.result()
            waited = time.monotonic() - started
        assert status == 403, body
        assert FETCH_TIMEOUT - 0.5 < waited < FETCH_TIMEOUT + 3, waited
        assert len(latencies) >= 5 and max(latencies) < 0.5, latencies
    finally:
        setup.idp.fault("/jwks", "off")


def test_fresh_start_with_the_provider_down_fails_closed_then_recovers(tmp_path_factory):
    for mode in ("embedded", "daemon"):
        s = Setup(mode, tmp_path_factory.mktemp(f"down-{mode}"), [new_key("EdDSA", "ed-1")], start_provider=False)
        try:
            claims = {"sub": "bob", "aud": "matrix", "iss": s.idp.issuer, "exp": int(time.time()) + 60}
            unverifiable = token(claims, alg="ES256", header={"kid": "ed-1"})
            s.assert_refused("bob", unverifiable, "keys_unavailable")
            s.idp.start()
            s.settle()
            status, body = s.login("bob", s.idp.user_token("bob", "urn:matrix:jwt:EdDSA"))
            assert status == 200, (mode, body)
        finally:
            s.close()


class _Redirect(BaseHTTPRequestHandler):
    target = ""

    def do_GET(self):  # noqa: N802
        self.send_response(302)
        self.send_header("Location", type(self).target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_key_set_behind_a_redirect_is_not_used(tmp_path_factory):
    redirect = ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    threading.Thread(target=redirect.serve_forever, daemon=True).start()
    try:
        for mode in ("embedded", "daemon"):
            url = f"http://localhost:{redirect.server_address[1]}/jwks"
            s = Setup(mode, tmp_path_factory.mktemp(f"redirect-{mode}"), [new_key("RS256", "rsa-1")], jwks_url=url)
            try:
                _Redirect.target = s.idp.meta["jwks_uri"]  # another origin, with the real keys
                s.assert_refused("bob", s.idp.user_token("bob"), "keys_unavailable")
                assert "redirect" in s.fetch_log(), mode
            finally:
                s.close()
    finally:
        redirect.shutdown()


def test_no_module_error_reached_synapse(setup):
    assert "Traceback" not in setup.hs.log_text()
    assert "Failed to run module API callback" not in setup.hs.log_text()
