"""Daemon mode against a real Synapse, when what answers is not the verifier daemon.

Whatever listens at `verifier.socket` or `verifier.url` gets every login's token and answers with
a verdict. The module checks each verdict against its own login, so an impostor that answers
every request with one fixed victim's verdict (admin included) logs nobody in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from homeserver import Homeserver, wait_until
from peers import Peer

VICTIM_VERDICT = {
    "user_id": "@victim:test.local",
    "localpart": "victim",
    "may_register": True,
    "admin": True,
    "displayname": "Owned",
    "update_displayname_on_login": True,
    "alg": "HS512",
    "kid": None,
    "key": "primary",
}


def impostor(path: Path) -> Peer:
    """A plain unix socket server that answers every request 200 with VICTIM_VERDICT."""
    body = json.dumps(VICTIM_VERDICT).encode()
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
    answer += b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    return Peer(path, lambda conn: conn.sendall(answer))


@pytest.fixture(scope="module")
def hs_with_impostor(tmp_path_factory):
    directory = tmp_path_factory.mktemp("impostor")
    peer = impostor(directory / "verify.sock")
    server = Homeserver(directory, {"verifier": {"socket": str(directory / "verify.sock"), "timeout_seconds": 5}})
    server.start()
    server.admin_token = server.register_with_shared_secret("root", admin=True)
    server.register_with_shared_secret("victim", admin=False)
    server.register_with_shared_secret("mallory", admin=False)
    yield server, peer
    server.stop()
    peer.close()


@pytest.mark.parametrize("user", ["mallory", "@mallory:test.local", "newcomer", "root"])
def test_an_impostor_daemon_logs_nobody_in(hs_with_impostor, user):
    hs, peer = hs_with_impostor
    asked = peer.served
    status, body = hs.login(user, "garbage")
    assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), body
    assert peer.served > asked, "the module did not ask the socket"
    user_id = user if user.startswith("@") else f"@{user}:test.local"
    line = f"ERROR JWT login refused for {user_id}: verifier daemon at {hs.dir / 'verify.sock'} gave an invalid verdict"
    wait_until(lambda: line in hs.log_text(), 5, f"log line {line!r}")


def test_the_impostors_victim_is_left_alone(hs_with_impostor):
    hs, _ = hs_with_impostor
    for user in ("mallory", "newcomer"):
        hs.login(user, "garbage")
    status, victim = hs.request("GET", "/_synapse/admin/v2/users/@victim:test.local", access_token=hs.admin_token)
    assert (status, victim["admin"]) == (200, False), victim
    assert victim["displayname"] == "victim", victim
    status, _ = hs.request("GET", "/_synapse/admin/v2/users/@newcomer:test.local", access_token=hs.admin_token)
    assert status == 404, "the impostor's verdict registered an account"
    assert "JWT login accepted" not in hs.log_text()


# --- The real daemon across hosts: TLS with a private CA, and a client credential -------------

CLIENT_TOKEN = "client-token-0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def tls_daemon(tmp_path_factory):
    from helpers import SECRET
    from homeserver import Daemon
    from tls import make_ca

    directory = tmp_path_factory.mktemp("tls-daemon")
    pki = make_ca(directory, "localhost", "127.0.0.1")
    token_file = directory / "client-token"
    token_file.write_text(CLIENT_TOKEN + "\n")
    token_file.chmod(0o600)
    daemon = Daemon(
        directory,
        f'secret = "{SECRET}"\n[server]\nworkers = 1\n'
        f'tls_certificate = "{pki.cert_file}"\ntls_key = "{pki.key_file}"\nclient_token_file = "{token_file}"\n',
        tcp=True,
    )
    daemon.start()
    port = daemon.url.rsplit(":", 1)[1]
    yield daemon, f"https://localhost:{port}", pki, token_file
    daemon.stop()


def _homeserver_for(tmp_path_factory, name: str, verifier: dict) -> Homeserver:
    server = Homeserver(tmp_path_factory.mktemp(name), {"verifier": {**verifier, "timeout_seconds": 5}})
    server.start()
    server.register_with_shared_secret("existing", admin=False)
    return server


def test_tls_daemon_with_the_credential_logs_in(tls_daemon, tmp_path_factory):
    from helpers import claims, token

    daemon, url, pki, token_file = tls_daemon
    hs = _homeserver_for(
        tmp_path_factory, "tls-ok", {"url": url, "ca_file": str(pki.ca_file), "client_token_file": str(token_file)}
    )
    try:
        status, body = hs.login("existing", token(claims("existing")))
        assert (status, body.get("user_id")) == (200, "@existing:test.local"), body
        status, body = hs.login("existing", token(claims("existing", exp=1)))
        assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), body
        wait_until(lambda: "JWT login rejected for @existing:test.local: expired" in hs.log_text(), 5, "log")
    finally:
        hs.stop()


def test_tls_daemon_refuses_a_module_without_the_credential(tls_daemon, tmp_path_factory):
    from helpers import claims, token

    daemon, url, pki, _ = tls_daemon
    # On loopback the module may omit the credential; the daemon still wants it.
    hs = _homeserver_for(tmp_path_factory, "tls-no-token", {"url": url, "ca_file": str(pki.ca_file)})
    try:
        status, body = hs.login("existing", token(claims("existing")))
        assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), body
        line = "JWT login refused for @existing:test.local: verifier daemon at"
        wait_until(lambda: line in hs.log_text() and "(daemon_error: HTTP 401" in hs.log_text(), 5, "ERROR line")
    finally:
        hs.stop()


def test_a_daemon_with_an_untrusted_certificate_gets_no_token(tls_daemon, tmp_path_factory):
    from helpers import claims, token
    from tls import make_ca

    daemon, url, _, token_file = tls_daemon
    other = make_ca(tmp_path_factory.mktemp("other-ca"), "localhost", "127.0.0.1")
    hs = _homeserver_for(
        tmp_path_factory,
        "tls-untrusted",
        {"url": url, "ca_file": str(other.ca_file), "client_token_file": str(token_file)},
    )
    try:
        status, body = hs.login("existing", token(claims("existing")))
        assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), body
        wait_until(lambda: "gave no verdict (daemon_unavailable" in hs.log_text(), 5, "ERROR line")
        assert "JWT login accepted" not in hs.log_text()
    finally:
        hs.stop()
