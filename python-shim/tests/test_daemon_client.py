"""The daemon client against peers that misbehave, over real unix sockets: answers without end,
answers that never come, answers that are not HTTP. The real daemon does none of this, so a small
socket server plays the peer. The client runs in a child Python with its own reactor: a Twisted
reactor cannot be restarted inside one test process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from peers import Peer, read_request

CLIENT = """
import json, sys, time
from twisted.internet import defer, reactor
from synapse_token_auth.config import DaemonEndpoint
from synapse_token_auth.daemon_client import DaemonClient, DaemonUnavailableError

async def main():
    endpoint = DaemonEndpoint(socket=sys.argv[1], url=None, timeout=float(sys.argv[2]))
    started = time.monotonic()
    try:
        answer = await DaemonClient(endpoint).verify("a.b.c", "alice", "test.local")
    except DaemonUnavailableError as e:
        answer = {"error": e.reason, "detail": str(e)}
    print(json.dumps(answer))
    print(time.monotonic() - started)

reactor.callWhenRunning(lambda: defer.ensureDeferred(main()).addBoth(lambda _: reactor.stop()))
reactor.run()
"""


def ask(path: Path, timeout: float = 5.0) -> tuple[dict, float]:
    """The client's answer, and how long the verify call took in seconds."""
    run = subprocess.run(
        [sys.executable, "-c", CLIENT, str(path), str(timeout)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    answer, elapsed = run.stdout.strip().splitlines()[-2:]
    return json.loads(answer), float(elapsed)


@pytest.fixture
def peer(tmp_path):
    peers = []

    def start(behave):
        p = Peer(tmp_path / "verify.sock", behave)
        peers.append(p)
        return p

    yield start
    for p in peers:
        p.close()


def test_a_plain_answer_reaches_the_module(peer, tmp_path):
    body = b'{"reason": "expired"}'
    peer(lambda c: c.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)))
    answer, _ = ask(tmp_path / "verify.sock")
    assert answer == {"result": "rejected", "reason": "expired", "alg": None, "kid": None}


def test_an_endless_chunked_answer_is_cut_off(peer, tmp_path):
    def endless(conn):
        p.send(conn, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"1000\r\n" + b"x" * 0x1000 + b"\r\n"
        while p.sent < 512 * 1024 * 1024:
            p.send(conn, chunk)

    p = peer(endless)
    answer, elapsed = ask(tmp_path / "verify.sock")
    assert answer["error"] == "daemon_error", answer
    assert "more than 65536 bytes" in answer["detail"]
    assert elapsed < 2, f"took {elapsed:.1f} s: the client read until the 5 s timeout"
    # What the peer got out before the client hung up: the bound plus socket buffers, not 512 MiB.
    assert p.sent < 16 * 1024 * 1024, p.sent


def test_a_huge_declared_length_is_cut_off(peer, tmp_path):
    def huge(conn):
        p.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
        while p.sent < 512 * 1024 * 1024:
            p.send(conn, b"x" * 65536)

    p = peer(huge)
    answer, elapsed = ask(tmp_path / "verify.sock")
    assert answer["error"] == "daemon_error", answer
    assert elapsed < 2 and p.sent < 16 * 1024 * 1024, (elapsed, p.sent)


def test_a_peer_that_never_answers_times_out(peer, tmp_path):
    peer(lambda c: time.sleep(5))
    answer, elapsed = ask(tmp_path / "verify.sock", timeout=1.0)
    assert answer["error"] == "daemon_timeout", answer
    # Once, not once more on a fresh connection (which would take 2 s).
    assert 1.0 <= elapsed < 1.8, elapsed


def test_an_answer_that_is_not_http_fails_closed(peer, tmp_path):
    peer(lambda c: c.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n"))
    answer, _ = ask(tmp_path / "verify.sock")
    assert answer["error"] == "daemon_unavailable", answer


# --- TLS to a daemon on another host -----------------------------------------------------------

CONFIG_CLIENT = """
import json, sys
from twisted.internet import defer, reactor
from synapse_token_auth.config import parse
from synapse_token_auth.daemon_client import DaemonClient, DaemonUnavailableError

async def main():
    endpoint = parse({"verifier": json.loads(sys.argv[1])}).daemon
    try:
        answer = await DaemonClient(endpoint).verify("a.b.c", "alice", "test.local")
    except DaemonUnavailableError as e:
        answer = {"error": e.reason, "detail": str(e)}
    print(json.dumps(answer))

reactor.callWhenRunning(lambda: defer.ensureDeferred(main()).addBoth(lambda _: reactor.stop()))
reactor.run()
"""


class TlsPeer:
    """An HTTPS server on 127.0.0.1 that records each request's head and answers 403 expired."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        import ssl

        self.heads: list[bytes] = []
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert_file, key_file)
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen()
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self._server.accept()
            except OSError:
                return
            try:
                with self._context.wrap_socket(raw, server_side=True) as conn:
                    self.heads.append(read_request(conn))
                    body = b'{"reason": "expired"}'
                    conn.sendall(
                        b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                        % (len(body), body)
                    )
            except OSError:
                pass  # the client refused the certificate: what some tests want to see

    def close(self) -> None:
        self._server.close()


def ask_with_config(verifier: dict) -> dict:
    run = subprocess.run(
        [sys.executable, "-c", CONFIG_CLIENT, json.dumps(verifier)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture
def tls_peer(tmp_path):
    from tls import make_ca

    pki = make_ca(tmp_path, "localhost", "127.0.0.1")
    token_file = tmp_path / "client-token"
    token_file.write_text("s3cr3t-client-token\n")
    peer = TlsPeer(pki.cert_file, pki.key_file)
    yield peer, pki, token_file
    peer.close()


def test_https_with_the_configured_ca_sends_the_client_credential(tls_peer):
    peer, pki, token_file = tls_peer
    for host in ("localhost", "127.0.0.1"):
        answer = ask_with_config(
            {"url": f"https://{host}:{peer.port}", "ca_file": str(pki.ca_file), "client_token_file": str(token_file)}
        )
        assert answer == {"result": "rejected", "reason": "expired", "alg": None, "kid": None}, answer
    assert len(peer.heads) == 2
    for head in peer.heads:
        assert head.startswith(b"POST /v1/verify HTTP/1.1\r\n"), head
        assert b"\r\nAuthorization: Bearer s3cr3t-client-token" in head, head


def test_https_to_a_daemon_with_an_untrusted_certificate_fails_closed(tls_peer, tmp_path):
    from tls import make_ca

    peer, _, token_file = tls_peer
    other = make_ca(tmp_path, "localhost", prefix="other-")
    answer = ask_with_config(
        {"url": f"https://localhost:{peer.port}", "ca_file": str(other.ca_file), "client_token_file": str(token_file)}
    )
    assert answer["error"] == "daemon_unavailable", answer
    assert peer.heads == [], "the request (and its credential) went to an untrusted peer"


def test_https_to_a_certificate_for_another_host_fails_closed(tmp_path):
    from tls import make_ca

    pki = make_ca(tmp_path, "verifier.internal")
    peer = TlsPeer(pki.cert_file, pki.key_file)
    try:
        answer = ask_with_config({"url": f"https://127.0.0.1:{peer.port}", "ca_file": str(pki.ca_file)})
    finally:
        peer.close()
    assert answer["error"] == "daemon_unavailable", answer
    assert peer.heads == []


def test_a_socket_daemon_gets_the_client_credential_too(tmp_path):
    heads = []

    def answer(conn):
        body = b'{"reason": "expired"}'
        conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    class Recording(Peer):
        def _serve(self) -> None:
            while True:
                try:
                    conn, _ = self._server.accept()
                except OSError:
                    return
                with conn:
                    heads.append(conn.recv(65536))
                    answer(conn)

    path = tmp_path / "verify.sock"
    recording = Recording(path, answer)
    token_file = tmp_path / "client-token"
    token_file.write_text("s3cr3t-client-token")
    try:
        result = ask_with_config({"socket": str(path), "client_token_file": str(token_file)})
    finally:
        recording.close()
    assert result["result"] == "rejected", result
    assert b"\r\nAuthorization: Bearer s3cr3t-client-token\r\n" in heads[0], heads


def test_a_daemon_that_refuses_the_credential_is_an_error(peer, tmp_path):
    body = b'{"error": "missing or wrong client credential"}'
    peer(lambda c: c.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)))
    answer = ask_with_config({"socket": str(tmp_path / "verify.sock")})
    assert answer["error"] == "daemon_error" and "client_token_file" in answer["detail"], answer
