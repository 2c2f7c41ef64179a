"""The daemon's HTTP API against its published description, docs/openapi.yaml: schemathesis sends
generated and malformed requests to the real, socket-activated daemon and checks every answer
(status codes, content types, bodies, no server errors); the verdict of a valid token, which no
generator can forge, is checked against the schema here."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import jsonschema
import pytest
import yaml
from helpers import REPO, SECRET, claims, token
from homeserver import Daemon, wait_until
from synapse_token_auth import _native

SPEC = REPO / "docs" / "openapi.yaml"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    # Every operation configured: the oauth and oidc types' requests go to a closed port, so
    # their logins are refused (introspection_failed) after a real connection attempt.
    config = f"""secret = "{SECRET}"
[oauth]
registration_enabled = true
expose_metadata_resource = {{ name = "oauth-meta", issuer = "http://127.0.0.1:9" }}
[oauth.introspection_validation]
endpoint = "http://127.0.0.1:9/introspect"
localpart_path = "sub"
timeout_seconds = 1
[oidc]
issuer = "http://127.0.0.1:9"
client_id = "matrix"
client_secret = "matrix-secret"
project_id = 1
organization_id = 2
timeout_seconds = 1
"""
    d = Daemon(tmp_path_factory.mktemp("api"), config, tcp=True)
    d.start()
    yield d
    d.stop()


def post(daemon: Daemon, path: str, body: dict) -> tuple[int, dict]:
    """POSTs `body` as JSON to the daemon's TCP listener: the status and the JSON answered."""
    request = urllib.request.Request(
        daemon.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def spec() -> dict:
    return yaml.safe_load(SPEC.read_text())


def test_openapi_lists_exactly_the_reason_codes_of_the_verifier():
    documented = spec()["components"]["schemas"]["Rejection"]["properties"]["reason"]["enum"]
    assert documented == _native.reject_reasons()


def test_daemon_answers_conform_to_openapi(daemon):
    schemathesis = Path(sys.executable).parent / "schemathesis"
    config = daemon.dir / "schemathesis.toml"
    # The registration route refuses (400) a user_id that does not name the localpart: a rule
    # between two members, which a schema cannot state, so most generated bodies are refused on
    # purpose and schemathesis would warn of it. Its warnings are off for that route (its
    # checks stay on); the rule has its own test below.
    config.write_text('[[operations]]\ninclude-path = "/v1/oauth/registration"\nwarnings = false\n')
    run = subprocess.run(
        [
            str(schemathesis),
            "--config-file",
            str(config),
            "run",
            str(SPEC),
            "--url",
            daemon.url,
            "--checks",
            "all",
            # Generated tokens are never valid, so a well-formed request is answered 403, not 2xx.
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            "300",
            "--workers",
            "1",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=daemon.dir,  # schemathesis keeps a cache in its working directory
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "passed" in run.stdout and "No issues found" in run.stdout, run.stdout[-2000:]


def test_verdict_of_a_valid_token_conforms_to_openapi(daemon):
    status, verdict = post(
        daemon, "/v1/verify", {"token": token(claims("alice")), "user": "alice", "server_name": "test.local"}
    )
    assert status == 200
    schemas = spec()["components"]["schemas"]
    # OpenAPI 3.0's `nullable` is not JSON Schema: turn it into a type list for the validator.
    verdict_schema = json.loads(json.dumps(schemas["Verdict"]))
    for prop in verdict_schema["properties"].values():
        if prop.pop("nullable", False):
            prop["type"] = [prop["type"], "null"]
    jsonschema.validate(verdict, verdict_schema)
    assert verdict["user_id"] == "@alice:test.local" and verdict["key"] == "primary"


def test_registration_for_another_user_than_its_localpart_is_refused(daemon):
    def register(body: dict) -> tuple[int, dict]:
        return post(daemon, "/v1/oauth/registration", body)

    assert register({"localpart": "alice", "user_id": "@alice:test.local"}) == (
        200,
        {"delivered": True, "interrupt": False, "detail": ""},
    )
    for user_id in ("@admin:test.local", "@alice2:test.local", "@alice:", "alice:test.local"):
        status, body = register({"localpart": "alice", "user_id": user_id})
        assert (status, body) == (400, {"error": "user_id is not @localpart:server_name"}), user_id
    line = "registration request refused: user_id does not name localpart"
    wait_until(lambda: line in daemon.log.read_text(errors="replace"), 5, "the audit line")
