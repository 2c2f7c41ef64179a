"""The daemon client against peers that misbehave, over real unix sockets: answers without end,
answers that never come, answers that are not HTTP. The real daemon does none of this, so a small
socket server plays the peer. The client runs in a child Python with its own reactor: a Twisted
reactor cannot be restarted inside one test process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from peers import KeepAlivePeer, Peer, http_answer, read_request, serve

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


def child(script: str, *args: str, stdin: str | None = None) -> list[str]:
    """Runs a client script in a child Python (with a reactor of its own): the lines it printed."""
    run = subprocess.run([sys.executable, "-c", script, *args], input=stdin, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip().splitlines()


def ask(path: Path, timeout: float = 5.0) -> tuple[dict, float]:
    """The client's answer, and how long the verify call took in seconds."""
    answer, elapsed = child(CLIENT, str(path), str(timeout))[-2:]
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
    p = peer(lambda c: c.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n"))
    answer, _ = ask(tmp_path / "verify.sock")
    # Something answered, and not with HTTP: an error of what answers, not a missing daemon.
    assert answer["error"] == "daemon_error", answer
    assert "not an HTTP/1.1 answer" in answer["detail"], answer
    assert p.served == 1, "an answer that came is not asked again"


# --- Kept-alive connections ----------------------------------------------------------------------

SESSION = """
import json, sys, time
from twisted.internet import defer, reactor, task
from synapse_token_auth.config import parse
from synapse_token_auth import daemon_client
from synapse_token_auth.daemon_client import DaemonClient, DaemonUnavailableError

async def one(client):
    started = time.monotonic()
    try:
        answer = await client.verify("a.b.c", "alice", "test.local")
    except DaemonUnavailableError as e:
        answer = {"error": e.reason, "detail": str(e)}
    answer["seconds"] = time.monotonic() - started
    return answer

async def main():
    if len(sys.argv) > 3:
        daemon_client.IDLE_SECONDS = float(sys.argv[3])
    client = DaemonClient(parse({"verifier": json.loads(sys.argv[1])}).daemon)
    steps = []
    for calls, pause in json.loads(sys.argv[2]):
        steps.append(await defer.gatherResults([defer.ensureDeferred(one(client)) for _ in range(calls)]))
        await task.deferLater(reactor, pause, lambda: None)
    print(json.dumps(steps))

reactor.callWhenRunning(lambda: defer.ensureDeferred(main()).addBoth(lambda _: reactor.stop()))
reactor.run()
"""

EXPIRED = http_answer("403 Forbidden", b'{"reason": "expired"}', "Content-Type: application/json")
REJECTED = {"result": "rejected", "reason": "expired", "alg": None, "kid": None}


def session(verifier: dict, plan: list[tuple[int, float]], idle_seconds: float | None = None) -> list[list[dict]]:
    """Runs one client through `plan`: steps of (concurrent calls, pause in seconds after them).
    The answers per step, each with the seconds it took."""
    idle = [] if idle_seconds is None else [str(idle_seconds)]
    return json.loads(child(SESSION, json.dumps(verifier), json.dumps(plan), *idle)[-1])


def answers(steps: list[list[dict]]) -> list[dict]:
    return [{k: v for k, v in a.items() if k != "seconds"} for step in steps for a in step]


@pytest.fixture
def keep_alive_peer(tmp_path):
    peers = []

    def start(behave):
        p = KeepAlivePeer(tmp_path / "verify.sock", behave)
        peers.append(p)
        return p

    yield start, {"socket": str(tmp_path / "verify.sock"), "timeout_seconds": 2}
    for p in peers:
        p.close()


def test_sequential_calls_share_one_connection(keep_alive_peer):
    start, verifier = keep_alive_peer
    peer = start(lambda c, n: c.sendall(EXPIRED))
    steps = session(verifier, [(1, 0)] * 20)
    assert answers(steps) == [REJECTED] * 20
    assert (peer.connections, peer.requests) == (1, 20)


def test_busy_connections_are_added_and_idle_ones_capped(keep_alive_peer):
    start, verifier = keep_alive_peer
    # Answers that take a while, so that none is there as soon as its request is written.
    peer = start(lambda c, n: (time.sleep(0.05), c.sendall(EXPIRED)))
    # 12 at once need 12 connections; 8 of them stay open for the next 12, which open 4 more.
    steps = session(verifier, [(12, 0.3), (12, 0)])
    assert answers(steps) == [REJECTED] * 24
    assert (peer.connections, peer.requests) == (16, 24)


def test_a_connection_idle_too_long_is_closed_instead_of_reused(keep_alive_peer):
    start, verifier = keep_alive_peer
    peer = start(lambda c, n: c.sendall(EXPIRED))
    # With 0.3 s instead of 20 s: the pause after the second call is longer, the first is not.
    steps = session(verifier, [(1, 0), (1, 0.6), (1, 0)], idle_seconds=0.3)
    assert answers(steps) == [REJECTED] * 3
    assert (peer.connections, peer.requests) == (2, 3)


def test_a_connection_the_daemon_closed_while_idle_is_replaced(keep_alive_peer):
    start, verifier = keep_alive_peer

    def answer_and_close(conn, n):
        # The daemon's keep-alive timeout, or a restart: every connection closes after its answer.
        conn.sendall(EXPIRED)
        return False

    peer = start(answer_and_close)
    steps = session(verifier, [(1, 0.3)] * 3)
    assert answers(steps) == [REJECTED] * 3
    assert (peer.connections, peer.requests) == (3, 3)


def test_a_stale_connection_is_retried_once_on_a_new_one(keep_alive_peer):
    start, verifier = keep_alive_peer

    def behave(conn, n):
        if n == 1:
            return False  # closed as the request arrived, as a daemon going away does
        conn.sendall(EXPIRED)

    peer = start(behave)
    steps = session(verifier, [(1, 0), (1, 0)])
    assert answers(steps) == [REJECTED, REJECTED]
    assert (peer.connections, peer.requests) == (2, 3)


def test_a_retry_that_fails_too_is_not_retried_again(keep_alive_peer):
    start, verifier = keep_alive_peer
    peer = start(lambda c, n: False if n else c.sendall(EXPIRED))
    steps = session(verifier, [(1, 0), (1, 0)])
    assert steps[0][0]["result"] == "rejected"
    assert steps[1][0]["error"] == "daemon_unavailable", steps
    assert "closed before an answer" in steps[1][0]["detail"], steps
    assert (peer.connections, peer.requests) == (2, 3)


def test_a_new_connection_closed_before_an_answer_is_not_retried(keep_alive_peer):
    start, verifier = keep_alive_peer
    peer = start(lambda c, n: False)
    steps = session(verifier, [(1, 0)])
    assert steps[0][0]["error"] == "daemon_unavailable", steps
    # Nothing was stale: the daemon took the request and hung up; asking again would only double
    # its load and the login's wait.
    assert (peer.connections, peer.requests) == (1, 1)


def test_a_timeout_drops_the_connection_and_is_not_retried(keep_alive_peer):
    start, verifier = keep_alive_peer

    def behave(conn, n):
        if n == 1:
            time.sleep(3)
            return False
        conn.sendall(EXPIRED)

    peer = start(behave)
    steps = session({**verifier, "timeout_seconds": 1}, [(1, 0)] * 3)
    first, second, third = (step[0] for step in steps)
    assert first["result"] == third["result"] == "rejected", steps
    assert second["error"] == "daemon_timeout" and 1.0 <= second["seconds"] < 1.8, second
    # The third call did not get the late answer on the dropped connection: it had a new one.
    assert (peer.connections, peer.requests) == (2, 3)


def test_connection_close_is_honoured(keep_alive_peer):
    start, verifier = keep_alive_peer
    # The peer says it closes, but keeps the connection open: it must not be used again.
    peer = start(lambda c, n: c.sendall(http_answer("403 Forbidden", b'{"reason": "expired"}', "Connection: close")))
    steps = session(verifier, [(1, 0)] * 3)
    assert answers(steps) == [REJECTED] * 3
    assert (peer.connections, peer.requests) == (3, 3)
    assert max(a["seconds"] for step in steps for a in step) < 1, steps


def test_bytes_after_the_answer_fail_closed(keep_alive_peer):
    start, verifier = keep_alive_peer
    # A second answer nobody asked for, behind the first: whatever this is, it is not the daemon,
    # and the next request's answer could not be told from it.
    pipelined = EXPIRED + http_answer("200 OK", b'{"user_id": "@victim:test.local", "localpart": "victim"}')
    peer = start(lambda c, n: c.sendall(pipelined if n == 0 else EXPIRED))
    steps = session(verifier, [(1, 0), (1, 0)])
    assert steps[0][0]["error"] == "daemon_error", steps
    assert "after the end of the answer" in steps[0][0]["detail"], steps
    assert answers(steps)[1] == REJECTED
    assert (peer.connections, peer.requests) == (2, 2)


def test_an_endless_head_is_cut_off(peer, tmp_path):
    def endless(conn):
        p.send(conn, b"HTTP/1.1 200 OK\r\n")
        while p.sent < 512 * 1024 * 1024:
            p.send(conn, b"X-Padding: x\r\n" * 1024)

    p = peer(endless)
    answer, elapsed = ask(tmp_path / "verify.sock")
    assert answer["error"] == "daemon_error", answer
    assert "head of more than 16384 bytes" in answer["detail"], answer
    assert elapsed < 2 and p.sent < 16 * 1024 * 1024, (elapsed, p.sent)


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(EXPIRED.replace(b"HTTP/1.1", b"HTTP/2.0"), id="version"),
        pytest.param(EXPIRED.replace(b"403 Forbidden", b"4O3 Forbidden"), id="status"),
        pytest.param(EXPIRED.replace(b"Content-Type:", b"Content Type:"), id="header name"),
        pytest.param(EXPIRED.replace(b"Content-Type:", b" Content-Type:"), id="folded header"),
        pytest.param(EXPIRED.replace(b"Content-Length: 21", b"Content-Length: -21"), id="negative length"),
        pytest.param(EXPIRED.replace(b"Content-Length: 21", b"Content-Length: 21\r\nContent-Length: 22"), id="lengths"),
        pytest.param(
            EXPIRED.replace(b"Content-Length: 21", b"Content-Length: 21\r\nTransfer-Encoding: chunked"),
            id="length and chunked",
        ),
        pytest.param(
            b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", id="unknown coding"
        ),
        pytest.param(b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", id="chunk size"),
        pytest.param(b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n", id="chunk end"),
        pytest.param(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", id="upgrade"),
        pytest.param(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 100\r\n\r\n{}", id="short body"),
    ],
)
def test_a_malformed_answer_is_an_error_and_not_retried(peer, tmp_path, answer):
    p = peer(lambda c: c.sendall(answer))
    result, _ = ask(tmp_path / "verify.sock")
    assert result["error"] == "daemon_error", result
    assert p.served == 1


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(
            b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'5;name=value\r\n{"rea\r\nf\r\nson": "expired"\r\n1\r\n}\r\n0\r\nX-Trailer: yes\r\n\r\n',
            id="chunked with extensions and trailers",
        ),
        pytest.param(b"HTTP/1.1 100 Continue\r\n\r\n" + EXPIRED, id="interim 100 first"),
        pytest.param(EXPIRED.replace(b"Content-Length: 21\r\n", b"Connection: close\r\n"), id="body until close"),
        pytest.param(EXPIRED.replace(b"HTTP/1.1 403 Forbidden", b"HTTP/1.0 403"), id="HTTP/1.0, no reason"),
        pytest.param(EXPIRED.replace(b"Content-Type: ", b"content-type:\t"), id="header case and tab"),
    ],
)
def test_well_formed_answers_of_every_framing_reach_the_module(peer, tmp_path, answer):
    peer(lambda c: c.sendall(answer))
    result, _ = ask(tmp_path / "verify.sock")
    assert result == REJECTED, result


CALLS = """
import json, sys
from twisted.internet import defer, reactor
from synapse_token_auth.config import parse
from synapse_token_auth.daemon_client import DaemonClient, DaemonUnavailableError

async def main():
    client = DaemonClient(parse({"verifier": json.loads(sys.argv[1])}).daemon)
    results = []
    for path, body, repeatable in json.load(sys.stdin):
        try:
            results.append(list(await client.call(path, body, repeatable=repeatable)))
        except DaemonUnavailableError as e:
            results.append({"error": e.reason, "detail": str(e)})
        except ValueError as e:
            results.append({"exception": f"ValueError: {e}"})
    print(json.dumps(results))

reactor.callWhenRunning(lambda: defer.ensureDeferred(main()).addBoth(lambda _: reactor.stop()))
reactor.run()
"""


def calls(verifier: dict, plan: list) -> list:
    """Runs `client.call(path, body, repeatable=...)` for each (path, body, repeatable) of `plan`."""
    # On standard input: megabytes, in some tests.
    return json.loads(child(CALLS, json.dumps(verifier), stdin=json.dumps(plan))[-1])


def test_other_routes_share_the_kept_alive_connections(keep_alive_peer):
    start, verifier = keep_alive_peer
    peer = start(lambda c, n: c.sendall(http_answer("200 OK", b'{"issuer": "https://idp"}')))
    results = calls(
        verifier,
        [["/v1/login-metadata/oauth", None, True], ["/v1/oauth/verify", {"token": "t"}, True]],
    )
    assert results == [[200, {"issuer": "https://idp"}], [200, {"issuer": "https://idp"}]]
    assert peer.connections == 1
    (_, get), (_, post) = peer.heads
    assert get.startswith(b"GET /v1/login-metadata/oauth HTTP/1.1\r\n") and b"Content-Length" not in get, get
    assert post.startswith(b"POST /v1/oauth/verify HTTP/1.1\r\n") and b"\r\nContent-Length: 14" in post, post


def test_a_request_that_must_not_repeat_gets_a_new_connection_and_no_retry(keep_alive_peer):
    start, verifier = keep_alive_peer

    def behave(conn, n):
        if n == 1:
            return False  # the daemon took the webhook request and went away
        conn.sendall(http_answer("200 OK", b"{}"))

    peer = start(behave)
    results = calls(verifier, [["/v1/oidc/verify", {}, True], ["/v1/oauth/registration", {"localpart": "a"}, False]])
    assert results[0] == [200, {}]
    assert results[1]["error"] == "daemon_unavailable", results
    # The webhook request went on a connection of its own, once.
    assert [number for number, _ in peer.heads] == [1, 2], peer.heads


def test_a_path_that_could_break_the_request_line_is_refused(keep_alive_peer):
    start, verifier = keep_alive_peer
    peer = start(lambda c, n: c.sendall(http_answer("200 OK", b"{}")))
    results = calls(verifier, [["/v1/x HTTP/1.1\r\nX: y", None, True]])
    assert results[0]["exception"].startswith("ValueError: not a daemon path"), results
    assert peer.requests == 0


# --- Without waiting for the reactor ------------------------------------------------------------

# A kept-alive connection, then one more call whose first part runs without the reactor: the child
# reports what the peer (a thread of the child) had received, and whether the call was over, by
# the time that part returned. The answer is made to be there before the client reads (its socket's
# `send` waits for the peer's answer), as it often is with the real daemon.
UNAWAITED = """
import json, socket, sys, threading
from twisted.internet import defer, reactor
from synapse_token_auth.config import DaemonEndpoint
from synapse_token_auth.daemon_client import DaemonClient

ANSWER = sys.argv[2].encode()
server = socket.socket(socket.AF_UNIX)
server.bind(sys.argv[1])
server.listen()
received, answered = threading.Semaphore(0), threading.Event()

def peer():
    conn, _ = server.accept()
    while conn.recv(65536):  # each request arrives whole: they are small
        received.release()
        conn.sendall(ANSWER)
        answered.set()

class AnsweredBeforeSendReturns:
    def __init__(self, sock):
        self._sock = sock
    def send(self, data):
        sent = self._sock.send(data)
        answered.wait(5)
        return sent
    def recv(self, *args):
        return self._sock.recv(*args)

async def main():
    threading.Thread(target=peer, daemon=True).start()
    client = DaemonClient(DaemonEndpoint(socket=sys.argv[1], url=None, timeout=5.0))
    first = await client.verify("a.b.c", "alice", "test.local")
    received.acquire()
    answered.clear()
    pooled = client._idle[0]
    if getattr(pooled, "_socket", None) is not None and sys.argv[3] == "answered":
        pooled._socket = AnsweredBeforeSendReturns(pooled._socket)
    second = defer.ensureDeferred(client.verify("a.b.c", "alice", "test.local"))
    report = {"sent": received.acquire(timeout=2), "over": second.called}
    report["second"] = await second
    report["first"] = first
    report["pooled"] = len(client._idle)
    print(json.dumps(report))

reactor.callWhenRunning(lambda: defer.ensureDeferred(main()).addBoth(lambda _: reactor.stop()))
reactor.run()
"""


def unawaited(tmp_path: Path, answered: bool) -> dict:
    mode = "answered" if answered else "later"
    return json.loads(child(UNAWAITED, str(tmp_path / "verify.sock"), EXPIRED.decode(), mode)[-1])


def test_a_request_is_written_before_the_reactor_turns(tmp_path):
    report = unawaited(tmp_path, answered=False)
    # Twisted's own write would only have buffered it until the reactor's next turn.
    assert report["sent"] is True, report
    assert report["first"] == report["second"] == REJECTED, report
    assert report["pooled"] == 1, report


def test_an_answer_already_there_is_read_without_a_reactor_turn(tmp_path):
    report = unawaited(tmp_path, answered=True)
    assert report["sent"] is True and report["over"] is True, report
    assert report["first"] == report["second"] == REJECTED, report
    # Read whole, so the connection went back to the pool for the next login.
    assert report["pooled"] == 1, report


def test_a_request_larger_than_the_socket_buffer_arrives_whole_and_in_order(keep_alive_peer):
    start, verifier = keep_alive_peer
    peer = start(lambda c, n: c.sendall(http_answer("200 OK", b"{}")))
    # Megabytes do not fit in a unix socket's buffer: the rest of the first goes through Twisted's
    # buffer, and so does everything after it on that connection.
    big = [{"blob": letter * 3_000_000} for letter in "ab"]
    results = calls(verifier, [["/v1/oauth/verify", body, True] for body in big] + [["/v1/oidc/verify", {}, True]])
    assert results == [[200, {}]] * 3
    assert peer.connections == 1
    assert peer.bodies == [json.dumps(body).encode() for body in big] + [b"{}"]


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
    """An HTTPS server on 127.0.0.1 that records each request's head and answers 403 expired:
    once per connection, or, with `keep_alive`, as often as asked on one connection."""

    def __init__(self, cert_file: Path, key_file: Path, keep_alive: bool = False) -> None:
        import ssl

        self.heads: list[bytes] = []
        self.connections = 0
        self._keep_alive = keep_alive
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert_file, key_file)
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen()
        self.port = self._server.getsockname()[1]
        serve(self._server, self._serve)

    def _serve(self, raw: socket.socket) -> None:
        self.connections += 1
        try:
            with self._context.wrap_socket(raw, server_side=True) as conn:
                while head := read_request(conn):
                    self.heads.append(head)
                    if not self._keep_alive:
                        conn.sendall(http_answer("403 Forbidden", b'{"reason": "expired"}', "Connection: close"))
                        break
                    conn.sendall(EXPIRED)
        except OSError:
            pass  # the client refused the certificate: what some tests want to see

    def close(self) -> None:
        self._server.close()


def ask_with_config(verifier: dict) -> dict:
    return json.loads(child(CONFIG_CLIENT, json.dumps(verifier))[-1])


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


def test_https_connections_are_kept_alive(tmp_path):
    from tls import make_ca

    pki = make_ca(tmp_path, "localhost")
    peer = TlsPeer(pki.cert_file, pki.key_file, keep_alive=True)
    try:
        steps = session({"url": f"https://localhost:{peer.port}", "ca_file": str(pki.ca_file)}, [(1, 0)] * 5)
    finally:
        peer.close()
    assert answers(steps) == [REJECTED] * 5
    assert (peer.connections, len(peer.heads)) == (1, 5)
    host = b"Host: localhost:%d" % peer.port
    for head in peer.heads:
        lines = head.split(b"\r\n")
        assert lines[0] == b"POST /v1/verify HTTP/1.1" and host in lines[1:], head


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
        def _serve(self, conn) -> None:
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
