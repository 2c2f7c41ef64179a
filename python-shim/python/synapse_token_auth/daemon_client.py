"""Asking the verifier daemon, without blocking Synapse's reactor.

A small HTTP/1.1 client written as a Twisted protocol, over a UNIX socket, loopback TCP, or TLS to
another host (only the configured CAs trusted, host name checked, a client credential sent): no
threads, no extra dependencies. Connections are kept alive and reused, one request at a time on
each, so a login costs one write and one read on a connection that is already open. On a plain
socket both happen at once when they can, without waiting for the reactor's next turn (see
``_Connection.send``). Twisted's generic client (``twisted.web.client.Agent``), used before,
took about 0.5 ms more per call inside Synapse (docs/benchmarks).

Everything the daemon sends is read within bounds (a 16 KiB head, a 64 KiB body), and every
failure (daemon down, timeout, an answer that is not well-formed HTTP/1.1, TLS refused) becomes a
rejection with a reason code, so the login fails closed and Synapse keeps serving. What an answer
says is checked against the login by the module (verdict.py).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import socket
import time
from typing import Any
from urllib.parse import quote, urlsplit

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IStreamClientEndpoint, ISystemHandle
from twisted.internet.ssl import Certificate, optionsForClientTLS, trustRootFromCertificates
from twisted.python.failure import Failure

from synapse_token_auth.config import DaemonEndpoint

logger = logging.getLogger(__name__)

#: The daemon's answers are a few hundred bytes; anything larger is not the daemon.
MAX_RESPONSE_BYTES = 64 * 1024
#: The status line and headers of an answer (with any interim 1xx heads and chunked trailers).
MAX_HEAD_BYTES = 16 * 1024
#: Idle connections kept open for the next logins; more are closed once their answer is read.
MAX_IDLE_CONNECTIONS = 8
#: A connection idle for longer is closed instead of reused: the daemon ends its own after 30 s,
#: and a request must not cross that close.
IDLE_SECONDS = 20.0
#: The daemon's routes (``call``): nothing that could end the request line.
_PATH = re.compile(r"/[A-Za-z0-9._~/-]*")
#: A chunk-size line (hex size and any extensions).
_MAX_CHUNK_LINE = 1024
#: What one read right after a request takes from the socket (Twisted's own read size).
_READ_BYTES = 65536


class DaemonUnavailableError(Exception):
    """The daemon could not give a verdict; the reason code says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _malformed(detail: str) -> DaemonUnavailableError:
    return DaemonUnavailableError("daemon_error", detail)


def _too_large() -> DaemonUnavailableError:
    return _malformed(f"answer of more than {MAX_RESPONSE_BYTES} bytes")


class _NoAnswerError(Exception):
    """The connection ended before the first byte of an answer: on a kept-alive connection, one
    the daemon closed while it was idle (after its keep-alive timeout, or on a restart)."""


class DaemonClient:
    """Asks the daemon (``/v1/verify``, and other routes through ``call``) over a small pool of
    kept-alive connections."""

    def __init__(self, endpoint: DaemonEndpoint, make_deferred_yieldable: Any = None) -> None:
        self._timeout = endpoint.timeout
        # Over TLS every byte must go through Twisted's TLS layer; plain sockets are used directly.
        self.plain = endpoint.socket is not None or (endpoint.url or "").startswith("http://")
        if endpoint.socket is not None:
            self._connector: IStreamClientEndpoint = UNIXClientEndpoint(reactor, endpoint.socket)
            host, self._prefix = "verifier", ""
        else:
            assert endpoint.url is not None
            self._connector, host, self._prefix = _tcp_endpoint(endpoint)
        fields = [
            "Host: " + host,
            "User-Agent: synapse-token-auth",
            "Accept: application/json",
            "Connection: keep-alive",
        ]
        if endpoint.client_token is not None:
            fields.append(f"Authorization: Bearer {endpoint.client_token}")
        # After the request line, before the request's own fields.
        self._fields = "".join(f"{field}\r\n" for field in fields).encode("ascii")
        # A verify request's head up to its Content-Length value, built once.
        self._verify_head = self._head(b"POST", "/v1/verify") + b"Content-Type: application/json\r\nContent-Length: "
        self._idle: list[_Connection] = []
        self._factory = _ConnectionFactory(self)
        self.description = endpoint.socket or endpoint.url or ""
        # Synapse's log contexts need foreign Deferreds wrapped; identity outside Synapse.
        self._yieldable = make_deferred_yieldable or (lambda d: d)

    async def verify(self, token: str, user: str, server_name: str) -> dict[str, Any]:
        """The daemon's verdict as a dict; raises DaemonUnavailableError when there is none."""
        body = json.dumps({"token": token, "user": user, "server_name": server_name}).encode()
        status, payload = await self._exchange(self._verify_head + b"%d\r\n\r\n" % len(body) + body)
        return _parse_answer(status, payload)

    async def call(
        self, path: str, body: dict[str, Any] | None, *, repeatable: bool = True
    ) -> tuple[int, dict[str, Any]]:
        """POSTs ``body`` as JSON (GETs without one) to the daemon's ``path``: the status and the
        JSON object answered. Raises DaemonUnavailableError without one (as ``verify`` does). A
        request that is not ``repeatable`` (the daemon acts on it beyond answering, such as calling
        the registration webhook) goes on a new connection and is never retried."""
        if not _PATH.fullmatch(path):
            raise ValueError(f"not a daemon path: {path!r}")
        if body is None:
            request = self._head(b"GET", path) + b"\r\n"
        else:
            data = json.dumps(body).encode()
            request = self._head(b"POST", path)
            request += b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(data) + data
        status, payload = await self._exchange(request, repeatable)
        if status == 401:
            raise DaemonUnavailableError(
                "daemon_error", "HTTP 401: the daemon refused the client credential (`verifier.client_token_file`)"
            )
        try:
            answer = json.loads(payload)
        except ValueError:
            raise DaemonUnavailableError("daemon_error", f"HTTP {status} with a body that is not JSON") from None
        if not isinstance(answer, dict):
            raise DaemonUnavailableError("daemon_error", f"HTTP {status} with an unexpected body")
        return status, answer

    def _head(self, method: bytes, path: str) -> bytes:
        return b"%s %s HTTP/1.1\r\n" % (method, (self._prefix + path).encode("ascii")) + self._fields

    async def _exchange(self, request: bytes, repeatable: bool = True) -> tuple[int, bytes]:
        call = _Call(self, request, repeatable)
        try:
            return await self._yieldable(call.done)
        except DaemonUnavailableError:
            raise
        except Exception as e:  # anything unforeseen (or Synapse cancelling the login) fails closed
            raise DaemonUnavailableError("daemon_unavailable", f"{type(e).__name__}: {e}") from None

    # --- the pool ----------------------------------------------------------------------------

    def _connect(self) -> defer.Deferred:
        return self._connector.connect(self._factory)

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()  # the most recently used: the least likely to be stale
            if not connection.open:
                continue
            if now - connection.idle_since > IDLE_SECONDS:
                # Soon closed by the daemon: a request now could cross its close.
                connection.close()
                continue
            return connection
        return None

    def _release(self, connection: _Connection) -> None:
        if len(self._idle) >= MAX_IDLE_CONNECTIONS:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        self._idle.append(connection)

    def _forget(self, connection: _Connection) -> None:
        if connection in self._idle:
            self._idle.remove(connection)


def _tcp_endpoint(endpoint: DaemonEndpoint) -> tuple[IStreamClientEndpoint, str, str]:
    """(endpoint, Host header, path prefix of the daemon's routes) for a `verifier.url`."""
    assert endpoint.url is not None
    parts = urlsplit(endpoint.url)
    assert parts.hostname is not None
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    host = parts.hostname
    try:
        address: Any = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None:
        connector: IStreamClientEndpoint = HostnameEndpoint(reactor, host, port)
    elif address.version == 4:
        connector = TCP4ClientEndpoint(reactor, host, port)
    else:
        connector = TCP6ClientEndpoint(reactor, host, port)
    if https:
        if not endpoint.ca_certificates:  # config.parse requires them; never the system's CAs
            raise ValueError("an https:// `verifier.url` needs `verifier.ca_file`")
        # Only the configured CAs, and the certificate must name the URL's host (SNI for a name).
        trust = trustRootFromCertificates([Certificate.loadPEM(pem) for pem in endpoint.ca_certificates])
        connector = wrapClientTLS(optionsForClientTLS(host, trustRoot=trust), connector)
    prefix = quote(parts.path or "", safe="/%:@!$&'()*+,;=-._~")
    return connector, parts.netloc, prefix


class _Call:
    """One verify request, within the timeout: on an idle pooled connection or a new one, and once
    more on a new connection when a pooled one turns out to have been closed by the daemon before
    it answered. `done` fires with (status, body) or fails with DaemonUnavailableError."""

    def __init__(self, client: DaemonClient, request: bytes, repeatable: bool) -> None:
        self._client = client
        self._request = request
        self.done: defer.Deferred = defer.Deferred(self._cancel)
        self._connecting: defer.Deferred | None = None
        self._connection: _Connection | None = None
        self._reused = False
        self._retried = not repeatable
        self._over = False
        self._timer: IDelayedCall | None = None
        connection = client._take_idle() if repeatable else None
        if connection is not None:
            self._send(connection, reused=True)
        else:
            self._open()
        if not self._over:
            # Only now: an answer read at once (see _Connection.send) needs no timer.
            self._timer = reactor.callLater(client._timeout, self._timed_out)

    def _open(self) -> None:
        self._connecting = self._client._connect()
        self._connecting.addCallbacks(self._connected, self._not_connected)

    def _connected(self, connection: _Connection) -> None:
        self._connecting = None
        if self._over:
            connection.close()
            return
        self._send(connection, reused=False)

    def _not_connected(self, failure: Failure) -> None:
        self._connecting = None
        if not self._over:  # else this is the CancelledError of the timeout's own cancel
            self._fail(DaemonUnavailableError("daemon_unavailable", _describe(failure)))

    def _send(self, connection: _Connection, reused: bool) -> None:
        self._connection = connection
        self._reused = reused
        connection.send(self._request, self)

    def answered(self, status: int, body: bytes) -> None:
        """Called by the connection with a complete answer."""
        self._connection = None
        if not self._over:
            self._over = True
            self._stop_timer()
            self.done.callback((status, body))

    def failed(self, error: Exception) -> None:
        """Called by the connection when the exchange failed (it is dropped already)."""
        self._connection = None
        if self._over:
            return
        if isinstance(error, _NoAnswerError):
            if self._reused and not self._retried:
                # A kept-alive connection that the daemon closed while it was idle (keep-alive
                # timeout, restart). Nothing of an answer came, so retry once on a new connection,
                # which waits in the socket for a restarting daemon. Verifying has no side
                # effects, so the retry is safe.
                self._retried = True
                logger.debug("retrying on a new connection: %s", error)
                self._open()
                return
            error = DaemonUnavailableError("daemon_unavailable", str(error))
        self._fail(error)

    def _fail(self, error: Exception) -> None:
        self._over = True
        self._stop_timer()
        self.done.errback(error)

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()

    def _timed_out(self) -> None:
        # No retry after a timeout: it would double the wait of a login on a daemon that hangs.
        self._stop()
        self.done.errback(DaemonUnavailableError("daemon_timeout", f"no answer within {self._client._timeout:g} s"))

    def _cancel(self, _: defer.Deferred) -> None:
        # Synapse gave up on the login; `done` fails with CancelledError.
        self._stop_timer()
        self._stop()

    def _stop(self) -> None:
        # Drop whatever the call was using: an answer that arrived later on a pooled connection
        # would be taken for the next request's.
        self._over = True
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.abort()


def _describe(failure: Failure) -> str:
    return f"{type(failure.value).__name__}: {failure.value}"


class _ConnectionFactory(protocol.Factory):
    noisy = False

    def __init__(self, client: DaemonClient) -> None:
        self._client = client

    def buildProtocol(self, addr: Any) -> _Connection:  # noqa: N802 (Twisted's name)
        return _Connection(self._client)


class _Connection(protocol.Protocol):
    """One connection to the daemon: idle in the pool, or carrying exactly one exchange."""

    def __init__(self, client: DaemonClient) -> None:
        self._client = client
        self._call: _Call | None = None
        self._response: _Response | None = None
        self.idle_since = 0.0
        self.open = False
        # The plain socket underneath, while requests may bypass Twisted's write buffer.
        self._socket: socket.socket | None = None

    def connectionMade(self) -> None:  # noqa: N802 (Twisted's name)
        self.open = True
        if self._client.plain and ISystemHandle.providedBy(self.transport):
            handle = self.transport.getHandle()
            if isinstance(handle, socket.socket):
                self._socket = handle

    def send(self, request: bytes, call: _Call) -> None:
        """Writes one request; `call` hears of its answer or failure (possibly before this returns)."""
        assert self._call is None and self.transport is not None
        self._call = call
        self._response = _Response()
        sock = self._socket
        if sock is None:
            self.transport.write(request)
            return
        # Twisted's write only buffers, and sends on the reactor's next turn; the daemon's answer
        # then needs one more. Sending now, and reading at once what is already there (the daemon
        # often answers while this thread is still in `send`), saves those turns; both calls are
        # non-blocking, so the reactor never waits on the daemon.
        try:
            sent = sock.send(request)
        except OSError:  # a full buffer, or a broken connection that Twisted will report
            sent = 0
        if sent < len(request):
            # The rest goes through Twisted's buffer, and so does everything after it on this
            # connection, so that bytes keep their order.
            self._socket = None
            self.transport.write(request[sent:])
            return
        try:
            data = sock.recv(_READ_BYTES, socket.MSG_DONTWAIT)
        except OSError:  # nothing yet (the reactor delivers it), or an error Twisted will report
            return
        if data:  # b"" is the end of the connection, which Twisted sees too
            self.dataReceived(data)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted's name)
        call, response = self._call, self._response
        if call is None or response is None:
            # Bytes nobody asked for, on an idle connection: whatever the next answer on it
            # would be, it cannot be trusted to belong to the next request.
            self.abort()
            return
        try:
            complete = response.feed(data)
        except DaemonUnavailableError as e:
            self.abort()
            call.failed(e)
            return
        if complete:
            self._call = self._response = None
            if response.keep_alive:
                self._client._release(self)
            else:
                self.close()
            call.answered(response.status, response.body())

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802
        self.open = False
        self._client._forget(self)
        call, response = self._call, self._response
        self._call = self._response = None
        if call is None or response is None:
            return
        if not response.started:
            call.failed(_NoAnswerError(f"the connection closed before an answer ({_describe(reason)})"))
            return
        try:
            response.connection_closed(clean=reason.check(ConnectionDone) is not None)
        except DaemonUnavailableError as e:
            call.failed(e)
            return
        call.answered(response.status, response.body())

    def close(self) -> None:
        """Closes the connection after what was written (nothing is outstanding)."""
        self.open = False
        if self.transport is not None:
            self.transport.loseConnection()

    def abort(self) -> None:
        """Drops the connection now, forgetting any exchange on it."""
        self.open = False
        self._call = self._response = None
        self._client._forget(self)
        if self.transport is not None:
            self.transport.abortConnection()


# --- HTTP/1.1 responses (RFC 9112), read incrementally and within bounds ------------------------

_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-5][0-9][0-9])(?: [\t \x21-\x7e\x80-\xff]*)?")
# Linear patterns only: a peer must not be able to make a regular expression backtrack.
_HEADER_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):([\t \x21-\x7e\x80-\xff]*)")
_CONTENT_LENGTH = re.compile(rb"[0-9]{1,15}")
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,8})[\t ]*(?:;[\t \x21-\x7e\x80-\xff]*)?")

_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


class _Response:
    """One response, fed as it arrives. ``feed`` returns True once it is complete and raises
    DaemonUnavailableError (daemon_error) for anything that is not well-formed HTTP/1.1 within the
    bounds, including bytes after the end of the answer."""

    def __init__(self) -> None:
        self.started = False
        self.status = 0
        self.keep_alive = True
        self._state = _HEAD
        self._buffer = b""
        self._head_budget = MAX_HEAD_BYTES
        self._remaining = 0
        self._parts: list[bytes] = []
        self._size = 0

    def body(self) -> bytes:
        return b"".join(self._parts)

    def feed(self, data: bytes) -> bool:
        self.started = True
        self._buffer += data
        while True:
            state = self._state
            if state == _HEAD:
                if not self._read_head():
                    return False
            elif state == _LENGTH or state == _CHUNK_DATA:
                take = self._buffer[: self._remaining]
                self._buffer = self._buffer[len(take) :]
                self._parts.append(take)
                self._remaining -= len(take)
                if self._remaining:
                    return False
                self._state = _DONE if state == _LENGTH else _CHUNK_END
            elif state == _CHUNK_SIZE:
                line = self._line(_MAX_CHUNK_LINE, "chunk size line")
                if line is None:
                    return False
                match = _CHUNK_LINE.fullmatch(line)
                if match is None:
                    raise _malformed("a malformed chunk size line")
                size = int(match.group(1), 16)
                if size == 0:
                    self._state = _TRAILERS
                else:
                    self._grow(size)
                    self._remaining = size
                    self._state = _CHUNK_DATA
            elif state == _CHUNK_END:
                if len(self._buffer) < 2:
                    return False
                if self._buffer[:2] != b"\r\n":
                    raise _malformed("a chunk not ended by CRLF")
                self._buffer = self._buffer[2:]
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                line = self._line(max(self._head_budget - 2, 0), "trailer section")
                if line is None:
                    return False
                self._head_budget -= len(line) + 2
                if line == b"":
                    self._state = _DONE
                elif _HEADER_LINE.fullmatch(line) is None:
                    raise _malformed("a malformed trailer field")
            elif state == _UNTIL_CLOSE:
                self._grow(len(self._buffer))
                self._parts.append(self._buffer)
                self._buffer = b""
                return False
            else:  # _DONE
                if self._buffer:
                    raise _malformed("bytes after the end of the answer")
                return True

    def connection_closed(self, clean: bool) -> None:
        """The peer closed the connection after the answer began: complete only for a body that
        runs until the close."""
        if self._state == _UNTIL_CLOSE and clean:
            self._state = _DONE
            return
        raise _malformed("the answer ended early")

    def _grow(self, size: int) -> None:
        self._size += size
        if self._size > MAX_RESPONSE_BYTES:
            raise _too_large()

    def _line(self, limit: int, what: str) -> bytes | None:
        end = self._buffer.find(b"\r\n", 0, limit + 2)
        if end < 0:
            if len(self._buffer) >= limit + 2:
                raise _malformed(f"a {what} of more than {limit} bytes")
            return None
        line = self._buffer[:end]
        self._buffer = self._buffer[end + 2 :]
        return line

    def _read_head(self) -> bool:
        """Parses one head when all of it is there; False until then."""
        end = self._buffer.find(b"\r\n\r\n", 0, self._head_budget)
        if end < 0:
            if len(self._buffer) >= self._head_budget:
                raise _malformed(f"a head of more than {MAX_HEAD_BYTES} bytes")
            return False
        head, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
        self._head_budget -= end + 4
        lines = head.split(b"\r\n")
        status_line = _STATUS_LINE.fullmatch(lines[0])
        if status_line is None:
            raise _malformed(f"not an HTTP/1.1 answer: {lines[0][:40]!r}")
        status = int(status_line.group(2))
        lengths: set[bytes] = set()
        codings: list[bytes] = []
        connection: list[bytes] = []
        for line in lines[1:]:
            field = _HEADER_LINE.fullmatch(line)
            if field is None:
                raise _malformed(f"a malformed header line: {line[:40]!r}")
            name, value = field.group(1).lower(), field.group(2).strip(b" \t")
            if name == b"content-length":
                lengths.add(value)
            elif name == b"transfer-encoding":
                codings += [c.strip().lower() for c in value.split(b",") if c.strip()]
            elif name == b"connection":
                connection += [c.strip().lower() for c in value.split(b",")]
        if 100 <= status < 200:
            if status == 101:
                raise _malformed("HTTP 101: a protocol switch nobody asked for")
            return True  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        self.status = status
        if status_line.group(1) == b"0" or b"close" in connection:
            self.keep_alive = False
        if codings:
            if lengths:
                raise _malformed("both Transfer-Encoding and Content-Length")
            if codings != [b"chunked"]:
                raise _malformed(f"unsupported Transfer-Encoding {b', '.join(codings)!r}")
        if status in (204, 304):
            self._state = _DONE
        elif codings:
            self._state = _CHUNK_SIZE
        elif lengths:
            if len(lengths) > 1 or _CONTENT_LENGTH.fullmatch(next(iter(lengths))) is None:
                raise _malformed("an invalid Content-Length")
            length = int(next(iter(lengths)))
            if length > MAX_RESPONSE_BYTES:
                raise _too_large()
            self._size = self._remaining = length
            self._state = _LENGTH if length else _DONE
        else:
            # No length: the body runs until the daemon closes the connection.
            self.keep_alive = False
            self._state = _UNTIL_CLOSE
        return True


def _parse_answer(status: int, payload: bytes) -> dict[str, Any]:
    # The payload is at most MAX_RESPONSE_BYTES: _Response stopped reading there.
    try:
        answer = json.loads(payload)
    except ValueError:
        raise DaemonUnavailableError("daemon_error", f"HTTP {status} with a body that is not JSON") from None
    if not isinstance(answer, dict):
        raise DaemonUnavailableError("daemon_error", f"HTTP {status} with an unexpected body")
    if status == 200 and isinstance(answer.get("user_id"), str) and isinstance(answer.get("localpart"), str):
        answer["result"] = "accepted"
        return answer
    if status == 403 and isinstance(answer.get("reason"), str):
        return {"result": "rejected", "reason": answer["reason"], "alg": None, "kid": None}
    if status == 401:
        raise DaemonUnavailableError(
            "daemon_error", "HTTP 401: the daemon refused the client credential (`verifier.client_token_file`)"
        )
    raise DaemonUnavailableError("daemon_error", f"HTTP {status}: {payload[:200]!r}")
