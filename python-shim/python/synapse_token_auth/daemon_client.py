"""Asking the verifier daemon, without blocking Synapse's reactor.

Twisted's own HTTP client over a UNIX socket, loopback TCP, or TLS to another host (only the
configured CAs trusted, host name checked, a client credential sent): no threads, no extra
dependencies. Every failure (daemon down, timeout, garbage answer, TLS refused) becomes a
rejection with a reason code, so the login fails closed and Synapse keeps serving. What an answer
says is checked against the login by the module (verdict.py).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.ssl import Certificate, trustRootFromCertificates
from twisted.web.client import (
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer, IPolicyForHTTPS
from zope.interface import implementer

from synapse_token_auth.config import DaemonEndpoint

logger = logging.getLogger(__name__)

#: The daemon's answers are a few hundred bytes; anything larger is not the daemon.
MAX_RESPONSE_BYTES = 64 * 1024


class DaemonUnavailableError(Exception):
    """The daemon could not give a verdict; the reason code says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@implementer(IAgentEndpointFactory)
class _UnixEndpointFactory:
    def __init__(self, path: str) -> None:
        self._path = path

    def endpointForURI(self, uri: Any) -> IStreamClientEndpoint:  # noqa: N802 (Twisted's name)
        return UNIXClientEndpoint(reactor, self._path)


@implementer(IPolicyForHTTPS)
class _NoTLS:
    """For an http:// URL: a redirect-free Agent never needs TLS, and must never fall back to the
    system's CAs if it did."""

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:  # noqa: N802 (Twisted's name)
        raise DaemonUnavailableError("daemon_error", "https without `verifier.ca_file`")


class DaemonClient:
    """POSTs to the daemon's ``/v1/verify`` over a kept-alive connection pool."""

    def __init__(self, endpoint: DaemonEndpoint, make_deferred_yieldable: Any = None) -> None:
        self._timeout = endpoint.timeout
        self._endpoint = endpoint
        headers = {b"Content-Type": [b"application/json"], b"User-Agent": [b"synapse-token-auth"]}
        if endpoint.client_token is not None:
            headers[b"Authorization"] = [b"Bearer " + endpoint.client_token.encode("ascii")]
        self._headers = Headers(headers)
        self._agent = self._make_agent(persistent=True)
        # For the retry: a connection of its own, never one from the pool.
        self._fresh_agent = self._make_agent(persistent=False)
        if endpoint.socket is not None:
            self._base = b"http://verifier"
        else:
            assert endpoint.url is not None
            self._base = endpoint.url.encode("ascii")
        self._url = self._base + b"/v1/verify"
        self.description = endpoint.socket or endpoint.url or ""
        # Synapse's log contexts need foreign Deferreds wrapped; identity outside Synapse.
        self._yieldable = make_deferred_yieldable or (lambda d: d)

    def _make_agent(self, persistent: bool) -> Agent:
        pool = HTTPConnectionPool(reactor, persistent=persistent)
        pool.maxPersistentPerHost = 16
        pool.cachedConnectionTimeout = 20
        if self._endpoint.socket is not None:
            return Agent.usingEndpointFactory(reactor, _UnixEndpointFactory(self._endpoint.socket), pool=pool)
        if self._endpoint.ca_certificates:
            # Only the configured CAs, and the certificate must name the URL's host.
            trust = trustRootFromCertificates([Certificate.loadPEM(pem) for pem in self._endpoint.ca_certificates])
            return Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trust), pool=pool)
        return Agent(reactor, contextFactory=_NoTLS(), pool=pool)

    async def verify(self, token: str, user: str, server_name: str) -> dict[str, Any]:
        """The daemon's verdict as a dict; raises DaemonUnavailableError when there is none."""
        body = json.dumps({"token": token, "user": user, "server_name": server_name}).encode()
        try:
            try:
                status, payload = await self._yieldable(self._post(self._agent, body))
            except (ResponseNeverReceived, RequestTransmissionFailed, ResponseFailed) as e:
                # A kept-alive connection closed by a daemon that is restarting: the pool may hold
                # more of them, so retry once on a new connection, which waits in the socket for
                # the next daemon. Verifying has no side effects, so the retry is safe (Twisted
                # only retries idempotent methods by itself).
                logger.debug("retrying on a new connection after %s", type(e).__name__)
                status, payload = await self._yieldable(self._post(self._fresh_agent, body))
        except DaemonUnavailableError:
            raise
        except Exception as e:  # connection refused, reset, no such socket, ...
            raise DaemonUnavailableError("daemon_unavailable", f"{type(e).__name__}: {e}") from None
        return _parse_answer(status, payload)

    async def call(self, path: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        """POSTs ``body`` (GETs without one) to the daemon's ``path``: the status and the JSON
        object answered. Raises DaemonUnavailableError without one (as ``verify`` does)."""
        data = json.dumps(body).encode() if body is not None else None
        try:
            status, payload = await self._yieldable(self._post(self._agent, data, path.encode("ascii")))
        except DaemonUnavailableError:
            raise
        except Exception as e:
            raise DaemonUnavailableError("daemon_unavailable", f"{type(e).__name__}: {e}") from None
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

    def _post(self, agent: Agent, body: bytes | None, path: bytes | None = None) -> defer.Deferred:
        url = self._base + path if path is not None else self._url
        if body is None:
            d = agent.request(b"GET", url, self._headers)
        else:
            d = agent.request(b"POST", url, self._headers, _BytesProducer(body))

        def read(response: Any) -> defer.Deferred:
            body = _BoundedBody()
            response.deliverBody(body)
            return body.done.addCallback(lambda payload: (response.code, payload))

        def timed_out(result: Any, timeout: float) -> None:
            # Whatever the cancelled request failed with (Twisted wraps the cancellation in
            # ResponseNeverReceived once the request is sent), this is a timeout, and it is not
            # retried: a retry would double the wait of a login on a daemon that hangs.
            raise DaemonUnavailableError("daemon_timeout", f"no answer within {timeout:g} s")

        d.addCallback(read)
        d.addTimeout(self._timeout, reactor, onTimeoutCancel=timed_out)
        return d


@implementer(IBodyProducer)
class _BytesProducer:
    """Writes the whole body at once. Twisted's FileBodyProducer trickles it through a cooperator,
    one reactor turn later, which adds latency to every login for a body of a few hundred bytes."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: Any) -> defer.Deferred:  # noqa: N802 (Twisted's name)
        consumer.write(self._body)
        return defer.succeed(None)

    def pauseProducing(self) -> None:  # noqa: N802
        pass

    def resumeProducing(self) -> None:  # noqa: N802
        pass

    def stopProducing(self) -> None:  # noqa: N802
        pass


class _BoundedBody(protocol.Protocol):
    """Collects a response body of at most MAX_RESPONSE_BYTES. Twisted's readBody has no bound,
    and a chunked answer states no length up front: a peer that is not the daemon could stream
    until the timeout. A larger body stops the transfer and fails the request."""

    def __init__(self) -> None:
        # Cancelled by the request's timeout: stop the transfer too.
        self.done: defer.Deferred = defer.Deferred(lambda _: self._stop())
        self._parts: list[bytes] = []
        self._size = 0

    def _stop(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted's name)
        if self.done.called:
            return
        self._size += len(data)
        if self._size > MAX_RESPONSE_BYTES:
            self._stop()
            self.done.errback(DaemonUnavailableError("daemon_error", f"answer of more than {MAX_RESPONSE_BYTES} bytes"))
            return
        self._parts.append(data)

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        if self.done.called:
            return
        if reason is None:
            self.done.errback(DaemonUnavailableError("daemon_error", "the answer ended early"))
        elif reason.check(ResponseDone):
            self.done.callback(b"".join(self._parts))
        else:
            self.done.errback(reason)


def _parse_answer(status: int, payload: bytes) -> dict[str, Any]:
    # The payload is at most MAX_RESPONSE_BYTES: _BoundedBody stopped reading there.
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
