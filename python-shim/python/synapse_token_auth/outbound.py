"""Requests the Rust core describes (key fetches, introspection, discovery, the registration
webhook), sent through Synapse's own HTTP client (``ModuleApi.http_client``), so that Synapse's
proxy settings apply and the reactor never blocks.

Every request is bounded: it ends within its timeout, reads at most its ``max_bytes`` of answer,
and follows no redirect. The answer comes back as the keyword arguments the core's ``fetched``,
``introspected`` and ``decide`` methods take: ``status``/``body`` (and ``cache_control``), or
``error``. Nothing here raises.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from twisted.internet import defer, reactor
from twisted.web.http_headers import Headers


async def send(
    api: Any,
    yieldable: Any,
    url: str,
    *,
    timeout_seconds: float,
    max_bytes: int,
    method: str = "GET",
    body: bytes | None = None,
    content_type: str | None = None,
    authorization: str | None = None,
) -> dict[str, Any]:
    """One request, as ``{"status", "body", "cache_control"}`` or ``{"error"}``."""
    from synapse.module_api import run_in_background

    headers = Headers()
    if content_type:
        headers.addRawHeader(b"Content-Type", content_type.encode("ascii"))
    if authorization:
        headers.addRawHeader(b"Authorization", authorization.encode("latin-1"))
    headers.addRawHeader(b"Accept", b"application/json")
    sending = run_in_background(_request, api, yieldable, method, url, body, headers, max_bytes)
    sending.addTimeout(timeout_seconds, reactor)
    try:
        return await yieldable(sending)
    except defer.TimeoutError:
        return {"error": f"no answer within {timeout_seconds:g} s"}
    except Exception as e:  # connection refused, TLS, DNS, ...
        return {"error": f"{type(e).__name__}: {e}"}


async def send_request(api: Any, yieldable: Any, request: Any) -> dict[str, Any]:
    """Sends a ``_native.HttpRequest``: a POST when it has a body type, else a GET."""
    post = bool(request.content_type)
    return await send(
        api,
        yieldable,
        request.url,
        timeout_seconds=request.timeout_seconds,
        max_bytes=request.max_bytes,
        method="POST" if post else "GET",
        body=request.body if post else None,
        content_type=request.content_type or None,
        authorization=request.authorization,
    )


async def _request(
    api: Any, yieldable: Any, method: str, url: str, body: bytes | None, headers: Headers, max_bytes: int
) -> dict[str, Any]:
    from synapse.http.client import BodyExceededMaxSize, read_body_with_max_size

    response = await api.http_client.request(method, url, data=body, headers=headers)
    # Synapse's client follows redirects by itself: an answer that came through one is not
    # used, so nothing is read from anywhere but the configured origin.
    if getattr(response, "previousResponse", None) is not None or 300 <= response.code < 400:
        response.deliverBody(_Discard())
        return {"error": f"redirected (HTTP {response.code}); redirects are not followed"}
    answer = BytesIO()
    try:
        await yieldable(read_body_with_max_size(response, answer, max_bytes))
    except BodyExceededMaxSize:
        return {"error": f"the answer is larger than {max_bytes} bytes"}
    cache_control = response.headers.getRawHeaders(b"cache-control")
    return {
        "status": response.code,
        "cache_control": b", ".join(cache_control).decode("latin-1") if cache_control else None,
        "body": answer.getvalue(),
    }


class _Discard:
    """Reads and drops a body we will not use, so the connection can be reused or closed."""

    def makeConnection(self, transport: Any) -> None:  # noqa: N802 (Twisted's name)
        transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        pass

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        pass
