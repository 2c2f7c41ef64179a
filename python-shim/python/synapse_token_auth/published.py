"""Keys an identity provider publishes (``jwks_url``, ``oidc_issuer``), in embedded mode.

The Rust core decides when to fetch, parses what comes back and keeps the cache; this module only
carries out its fetch requests, through Synapse's own HTTP client (``ModuleApi.http_client``), so
Synapse's proxy settings apply and the reactor never blocks. A login that needs keys that are being
fetched by another login waits for that fetch, at most its timeout; nothing here can raise into
Synapse or hold a login longer than the fetch timeout plus a second.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, reactor

from synapse_token_auth import _native, metrics, outbound

logger = logging.getLogger(__name__)


class KeyFetcher:
    """Verifies logins with a policy whose keys are fetched: one per module instance, so one
    cache and one fetch at a time per Synapse process."""

    def __init__(self, verifier: _native.Verifier | _native.OAuth, api: Any, make_deferred_yieldable: Any) -> None:
        self._verifier = verifier
        self._api = api
        self._yieldable = make_deferred_yieldable
        # Logins waiting for the fetch in flight, and that fetch's timeout.
        self._waiters: list[defer.Deferred] = []
        self._timeout = 5.0

    async def verify(self, token: str, user: str, server_name: str) -> dict[str, Any]:
        """The verdict, as ``_native.Verifier.verify`` returns it, fetching keys when needed."""
        return await self.decide(
            lambda: self._verifier.login(token, user, server_name),
            lambda: self._verifier.verify(token, user, server_name),
        )

    async def decide(self, login: Callable[[], tuple[str, Any, Any]], verify: Callable[[], Any]) -> Any:
        """Runs ``login`` (the core's ``("done" | "fetch" | "wait", value, refresh)`` step) and
        carries out the fetch it asks for, then decides with ``verify``."""
        kind, value, refresh = login()
        if kind == "done":
            if refresh is not None:
                self._background(refresh)
            return value
        if kind == "fetch":
            await self._run(value)
        else:
            await self._wait()
        # With what the fetch brought: never a second fetch, so a login waits at most one
        # fetch timeout.
        return verify()

    def _background(self, request: _native.FetchRequest) -> None:
        run = getattr(self._api, "run_as_background_process", None)
        if run is None:  # Synapse before the ModuleApi method
            from synapse.module_api import run_as_background_process as run
        run("synapse_token_auth.refresh_keys", self._run, request)

    async def _wait(self) -> None:
        waiter: defer.Deferred = defer.Deferred()
        self._waiters.append(waiter)
        waiter.addTimeout(self._timeout + 1, reactor)
        try:
            await self._yieldable(waiter)
        except defer.TimeoutError:
            pass

    async def _run(self, request: _native.FetchRequest | None) -> None:
        """Carries out ``request`` and what follows it (the key set after discovery), reports
        each answer to the core and logs it; then wakes the waiting logins."""
        try:
            while request is not None:
                self._timeout = float(request.timeout_seconds)
                answer = await self._fetch(request)
                report = self._verifier.fetched(request, **answer)
                metrics.key_fetched(report["ok"])
                log = logger.info if report["ok"] else logger.warning
                log("%s", report["message"])
                for kid, why in report["ignored"]:
                    logger.warning("key not used (kid %s at %s): %s", kid, request.url, why)
                request = report["next"]
        except Exception:
            # A bug here must not hold logins: the core counts an unreported fetch as failed
            # once its timeout has passed.
            logger.exception("fetching keys failed unexpectedly")
        finally:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.called:
                    waiter.callback(None)

    async def _fetch(self, request: _native.FetchRequest) -> dict[str, Any]:
        """One GET through Synapse's client, bounded in time and size; the keyword arguments of
        ``Verifier.fetched``."""
        return await outbound.send(
            self._api,
            self._yieldable,
            request.url,
            timeout_seconds=request.timeout_seconds,
            max_bytes=request.max_bytes,
        )
