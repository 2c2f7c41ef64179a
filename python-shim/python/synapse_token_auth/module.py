"""The Synapse module: the ``com.famedly.login.token`` login type.

Synapse calls :meth:`TokenAuthenticator.check_auth` with the login's user and token. The token is
verified (in-process, or by the verifier daemon), then the user is found or registered through
the public ModuleApi, the admin and display name claims are applied, and the canonical user id is
returned. Every refusal returns ``None`` (Synapse answers 403 M_FORBIDDEN) and is logged once at
INFO with the user and a reason code; nothing ever raises into Synapse.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from synapse.module_api import ModuleApi, make_deferred_yieldable
from synapse.module_api.errors import SynapseError
from synapse.types import UserID

from synapse_token_auth import config as config_module
from synapse_token_auth.daemon_client import DaemonClient, DaemonUnavailableError
from synapse_token_auth.published import KeyFetcher

logger = logging.getLogger(__name__)

LOGIN_TYPE = "com.famedly.login.token"
LOGIN_FIELDS = ("token",)

CheckAuthResult = tuple[str, Callable[[Any], Awaitable[None]] | None] | None


class TokenAuthenticator:
    """Synapse module entry point; ``config`` is what :meth:`parse_config` returned."""

    def __init__(self, config: config_module.ModuleConfig, api: ModuleApi) -> None:
        self._api = api
        self._config = config
        self._daemon = DaemonClient(config.daemon, make_deferred_yieldable) if config.daemon is not None else None
        # Keys published by an identity provider: fetched through Synapse's own HTTP client.
        self._keys = (
            KeyFetcher(config.verifier, api, make_deferred_yieldable)
            if config.verifier is not None and config.verifier.fetches_keys
            else None
        )
        api.register_password_auth_provider_callbacks(auth_checkers={(LOGIN_TYPE, LOGIN_FIELDS): self.check_auth})
        if config.verifier is not None:
            logger.info("JWT login enabled (embedded verifier): %s", config.verifier.effective_config())
        else:
            logger.info("JWT login enabled (verifier daemon at %s)", self._daemon.description if self._daemon else "?")

    @staticmethod
    def parse_config(config: Any) -> config_module.ModuleConfig:
        return config_module.parse(config)

    async def check_auth(self, username: str, login_type: str, login_dict: dict[str, Any]) -> CheckAuthResult:
        """Returns ``(canonical_user_id, None)`` for a valid token, else ``None``. Never raises."""
        try:
            return await self._check_auth(username, login_type, login_dict)
        except Exception:
            # A bug or a database error: refuse this login, keep Synapse serving.
            logger.exception("JWT login failed with an unexpected error for user %r", username)
            return None

    # The original module's method name, for code that calls it directly.
    check_jwt_auth = check_auth

    async def _check_auth(self, username: str, login_type: str, login_dict: dict[str, Any]) -> CheckAuthResult:
        if login_type != LOGIN_TYPE:
            return None
        token = login_dict.get("token")
        if not isinstance(token, str) or not isinstance(username, str):
            return self._reject(username, "malformed_token")
        server_name = self._api.server_name

        if self._daemon is not None:
            try:
                verdict = await self._daemon.verify(token, username, server_name)
            except DaemonUnavailableError as e:
                logger.error(
                    "JWT login refused for %s: verifier daemon at %s gave no verdict (%s: %s)",
                    _qualified(username, server_name),
                    self._daemon.description,
                    e.reason,
                    e,
                )
                return None
        elif self._keys is not None:
            verdict = await self._keys.verify(token, username, server_name)
        else:
            assert self._config.verifier is not None
            verdict = self._config.verifier.verify(token, username, server_name)

        if verdict["result"] != "accepted":
            return self._reject(username, verdict["reason"], verdict.get("alg"), verdict.get("kid"))

        user_id: str = verdict["user_id"]
        canonical = await self._api.check_user_exists(user_id)
        registered = False
        if canonical is None:
            if not verdict["may_register"]:
                return self._reject(user_id, "unknown_user", verdict.get("alg"), verdict.get("kid"))
            canonical = await self._register(verdict)
            if canonical is None:
                return None
            registered = True

        # A fresh account got both at registration; an existing one gets them on every login.
        admin = verdict.get("admin")
        if isinstance(admin, bool) and not registered:
            await self._api.set_user_admin(canonical, admin)
        displayname = verdict.get("displayname")
        if isinstance(displayname, str) and not registered and verdict.get("update_displayname_on_login"):
            await self._api.set_displayname(UserID.from_string(canonical), displayname)

        logger.info(
            "JWT login accepted for %s (alg=%s kid=%s key=%s%s)",
            canonical,
            verdict.get("alg"),
            _printable(verdict.get("kid") or ""),
            _printable(verdict.get("key") or ""),
            ", registered" if registered else "",
        )
        return canonical, None

    async def _register(self, verdict: dict[str, Any]) -> str | None:
        localpart: str = verdict["localpart"]
        try:
            return await self._api.register_user(
                localpart, displayname=verdict.get("displayname"), admin=verdict.get("admin") is True
            )
        except SynapseError as e:
            if e.errcode != "M_USER_IN_USE":
                logger.warning("JWT login refused for %s: registration failed: %s", verdict["user_id"], e)
                return None
        # Another login registered the same user a moment ago: that is success, not failure.
        canonical = await self._api.check_user_exists(verdict["user_id"])
        if canonical is None:
            logger.warning("JWT login refused for %s: user in use but not found", verdict["user_id"])
        return canonical

    def _reject(self, user: Any, reason: str, alg: str | None = None, kid: str | None = None) -> None:
        server_name = self._api.server_name
        logger.info(
            "JWT login rejected for %s: %s (alg=%s kid=%s)",
            _qualified(user, server_name) if isinstance(user, str) else repr(user),
            reason,
            _printable(alg or ""),
            _printable(kid or ""),
        )
        return None


def _qualified(user: str, server_name: str) -> str:
    return _printable(user if user.startswith("@") else f"@{user}:{server_name}")


def _printable(text: str) -> str:
    """Client-supplied text (user, and a rejected token's alg and kid) in a log line: bounded,
    and with control characters escaped so that it cannot forge log lines."""
    text = text[:255]
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")
