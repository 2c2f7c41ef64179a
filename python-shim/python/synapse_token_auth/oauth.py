"""The original module's ``oauth`` and ``oidc`` login types.

The verdict comes from the Rust core: in this process (``InProcess``: ``_native.OAuth`` and
``_native.Oidc`` check tokens and introspection answers and name the user, and their requests go
through Synapse's HTTP client, ``outbound.py``), or from the verifier daemon (``ViaDaemon``),
which holds the secrets and makes the requests. Either way this module does what only Synapse can:
find or register the account, call the registration webhook first, record and check the
account's external id ``(iss, sub)``, bind the e-mail address, record single-use tokens, and
apply the display name and admin claims once Synapse has accepted the login.

Every refusal is a ``None`` for Synapse (403) with one log line naming the user and a reason
code; nothing raises into Synapse.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from synapse_token_auth import _native, accounts, claims, metrics, outbound
from synapse_token_auth.daemon_client import DaemonUnavailableError
from synapse_token_auth.logtext import printable, qualified
from synapse_token_auth.published import KeyFetcher
from synapse_token_auth.replay import ReplayStoreUnavailableError, UsedTokens
from synapse_token_auth.reserved import ReservedAccounts

logger = logging.getLogger(__name__)

OAUTH_LOGIN_TYPE = "com.famedly.login.token.oauth"
OIDC_LOGIN_TYPE = "com.famedly.login.token.oidc"

# An OAuth access token is visible ASCII (RFC 6749 appendix A.12, VSCHAR); a JWT is base64url
# and dots, which is a subset. Anything else is refused before any request is made.
_ACCESS_TOKEN = re.compile(r"[\x21-\x7e]+")


class _RefusedError(Exception):
    """A login refused with a reason code; ``error`` marks an operator's problem (ERROR)."""

    def __init__(self, user: Any, reason: str, detail: str = "", *, error: bool = False) -> None:
        super().__init__(reason)
        self.user = user
        self.reason = reason
        self.detail = detail
        self.error = error


class OAuthLogins:
    """``check_oauth`` and ``check_oidc_auth``: one instance per module, so one key cache and
    one discovered introspection endpoint per Synapse process."""

    def __init__(
        self,
        api: ModuleApi,
        reserved: ReservedAccounts,
        oauth: InProcess | ViaDaemon | None,
        oidc: InProcess | ViaDaemon | None,
        used_tokens: UsedTokens | None = None,
    ) -> None:
        self._api = api
        self._reserved = reserved
        self._used_tokens = used_tokens
        self._oauth = oauth
        self._oidc = oidc

    async def check_oauth(self, username: str, login_type: str, login_dict: dict[str, Any]) -> Any:
        if login_type != OAUTH_LOGIN_TYPE or self._oauth is None:
            return None
        return await self._guarded(OAUTH_LOGIN_TYPE, username, self._oauth_login, username, login_dict)

    async def check_oidc(self, username: str, login_type: str, login_dict: dict[str, Any]) -> Any:
        if login_type != OIDC_LOGIN_TYPE or self._oidc is None:
            return None
        return await self._guarded(OIDC_LOGIN_TYPE, username, self._oidc_login, username, login_dict)

    async def _guarded(self, login_type: str, username: Any, login: Any, *args: Any) -> Any:
        server_name = self._api.server_name
        try:
            return await login(*args)
        except _RefusedError as r:
            user = qualified(r.user, server_name)
            if r.error:
                metrics.login_failed(login_type, r.reason)
                logger.error("%s login refused for %s: %s (%s)", _name(login_type), user, r.reason, printable(r.detail))
            else:
                metrics.login_rejected(login_type, r.reason)
                logger.info("%s login rejected for %s: %s", _name(login_type), user, printable(r.reason))
            return None
        except Exception:
            # A bug or a database error: refuse this login, keep Synapse serving.
            metrics.login_failed(login_type, "internal_error")
            logger.exception(
                "%s login refused for %s: internal_error (unexpected error)",
                _name(login_type),
                qualified(username, server_name),
            )
            return None

    # -- oauth --------------------------------------------------------------------------------

    async def _oauth_login(self, username: Any, login_dict: dict[str, Any]) -> Any:
        token = _token(username, login_dict)
        with metrics.VERIFY_DURATION.time():
            assert self._oauth is not None
            verdict = await self._oauth.oauth(token, username)
        _raise_if_rejected(username, verdict)
        await self._record_use(verdict)

        async def register() -> tuple[str, bool]:
            await self._notify_registration(verdict)
            user_id, registered = await self._register(verdict["localpart"], verdict["displayname"], verdict["email"])
            if registered:
                await self._api.record_user_external_id(verdict["issuer"], verdict["subject"], user_id)
            return user_id, registered

        canonical, registered = await self._account(verdict, register)
        if not registered and verdict["check_external_id"]:
            await self._check_external_id(canonical, verdict["issuer"], verdict["subject"])

        # As in the original, the admin claim counts at registration only; the display name on
        # every login (a new account got it when it was created).
        callback = claims.after_login(
            self._api,
            canonical,
            True if registered and verdict["admin"] else None,
            None if registered else verdict["displayname"],
        )
        self._accepted(OAUTH_LOGIN_TYPE, canonical, registered)
        return canonical, callback

    async def _notify_registration(self, verdict: dict[str, Any]) -> None:
        if not verdict["notify_on_registration"]:
            return
        assert self._oauth is not None
        delivered, interrupt, why = await self._oauth.notify(verdict)
        if delivered:
            return
        if interrupt:
            raise _RefusedError(verdict["user_id"], "registration_webhook_failed", why, error=True)
        logger.warning(
            "OAuth login of %s: the registration webhook failed (%s); registering anyway (interrupt_on_error is false)",
            verdict["user_id"],
            printable(why),
        )

    async def _check_external_id(self, user_id: str, issuer: str, subject: str) -> None:
        """An account bound to external ids may only be logged into with one of them: another
        provider account that claims the same localpart does not take it over."""
        # ModuleApi has no reader for external ids; the store's is checked for at start-up
        # (module.py) and tested against the pinned Synapse.
        external_ids = await self._api._store.get_external_ids_by_user(user_id)
        if external_ids and (issuer, subject) not in [tuple(e) for e in external_ids]:
            raise _RefusedError(user_id, "external_id_mismatch")

    async def _record_use(self, verdict: dict[str, Any]) -> None:
        """A single-use JWT (`jwt_validation.single_use_tokens`) logs in once, on any process:
        recorded before the account checks, as for JWT login (module.py says why)."""
        key, until = verdict.get("replay_key"), verdict.get("replay_until")
        if key is None or until is None:
            return
        if self._used_tokens is None:
            raise _RefusedError(verdict["user_id"], "internal_error", "a replay key but no store for it", error=True)
        try:
            first_use = await self._used_tokens.record(key, verdict["user_id"], until)
        except ReplayStoreUnavailableError as e:
            raise _RefusedError(verdict["user_id"], "replay_store_unavailable", str(e), error=True) from None
        if not first_use:
            raise _RefusedError(verdict["user_id"], "token_replayed")

    # -- oidc ---------------------------------------------------------------------------------

    async def _oidc_login(self, username: Any, login_dict: dict[str, Any]) -> Any:
        token = _token(username, login_dict)
        with metrics.VERIFY_DURATION.time():
            assert self._oidc is not None
            verdict = await self._oidc.oidc(token, username)
        _raise_if_rejected(username, verdict)

        canonical, registered = await self._account(verdict, lambda: self._register(verdict["localpart"], None, None))
        self._accepted(OIDC_LOGIN_TYPE, canonical, registered)
        return canonical, None

    # -- accounts -----------------------------------------------------------------------------

    async def _account(
        self, verdict: dict[str, Any], register: Callable[[], Awaitable[tuple[str, bool]]]
    ) -> tuple[str, bool]:
        """The verdict's account, as Synapse spells it, and whether ``register`` just created
        it: refused for a reserved namespace, an unknown user without registration, or an
        account Synapse keeps for others."""
        user_id = verdict["user_id"]
        self._check_namespace(user_id)
        canonical = await accounts.existing(self._api, user_id)
        if canonical is None:
            if not verdict["may_register"]:
                raise _RefusedError(user_id, "unknown_user")
            canonical, registered = await register()
            if registered:
                return canonical, True
        await self._check_account(canonical)
        return canonical, False

    def _check_namespace(self, user_id: str) -> None:
        reason = self._reserved.namespace_reason(user_id)
        if reason is not None:
            raise _RefusedError(user_id, reason)

    async def _check_account(self, user_id: str) -> None:
        reason = await self._reserved.account_reason(user_id)
        if reason is not None:
            raise _RefusedError(user_id, reason)

    async def _register(self, localpart: str, displayname: str | None, email: str | None) -> tuple[str, bool]:
        """The new account's id and True, or the id a concurrent login registered and False."""
        user_id = f"@{localpart}:{self._api.server_name}"
        try:
            canonical, registered = await accounts.register(
                self._api, localpart, user_id, displayname, [email] if email is not None else None
            )
        except SynapseError as e:
            raise _RefusedError(user_id, "internal_error", f"registration failed: {e}", error=True) from None
        if canonical is None:
            raise _RefusedError(user_id, "internal_error", "user in use but not found", error=True)
        return canonical, registered

    def _accepted(self, login_type: str, user_id: str, registered: bool) -> None:
        logger.info("%s login accepted for %s%s", _name(login_type), user_id, ", registered" if registered else "")
        metrics.login_accepted(login_type)


def _name(login_type: str) -> str:
    return "OIDC" if login_type == OIDC_LOGIN_TYPE else "OAuth"


def _token(username: Any, login_dict: dict[str, Any]) -> str:
    if not isinstance(username, str) or len(username.encode("utf-8", "replace")) > 255:
        raise _RefusedError(username, "invalid_user")
    token = login_dict.get("token")
    if not isinstance(token, str):
        raise _RefusedError(username, "malformed_token")
    if len(token) > _native.MAX_TOKEN_BYTES:
        raise _RefusedError(username, "token_too_large")
    if not _ACCESS_TOKEN.fullmatch(token):
        raise _RefusedError(username, "malformed_token")
    return token


def _raise_if_rejected(username: Any, result: Any) -> None:
    if isinstance(result, dict) and result.get("result") == "rejected":
        reason = result["reason"]
        raise _RefusedError(username, reason, result.get("detail") or "", error=reason == "introspection_failed")


class InProcess:
    """Verdicts from the Rust core in this process; its requests go through Synapse's HTTP
    client."""

    def __init__(self, api: ModuleApi, yieldable: Any, oauth: _native.OAuth | None, oidc: _native.Oidc | None) -> None:
        self._api = api
        self._yieldable = yieldable
        self._oauth = oauth
        self._oidc = oidc
        self._keys = KeyFetcher(oauth, api, yieldable) if oauth is not None and oauth.checks_jwt else None

    async def oauth(self, token: str, username: str) -> dict[str, Any]:
        oauth = self._oauth
        assert oauth is not None
        jwt = None
        if self._keys is not None:
            jwt = await self._keys.decide(lambda: oauth.jwt_login(token), lambda: oauth.jwt_verify(token))
            if isinstance(jwt, dict):
                return jwt
        introspected = None
        request = oauth.introspection_request(token)
        if request is not None:
            answer = await self._send(request)
            introspected = oauth.introspected(**answer)
            if isinstance(introspected, dict):
                return introspected
        verdict = oauth.decide(jwt, introspected, username, self._api.server_name)
        if verdict["result"] == "accepted":
            verdict["check_external_id"] = oauth.check_external_id
            verdict["notify_on_registration"] = oauth.notifies_on_registration
        return verdict

    async def notify(self, verdict: dict[str, Any]) -> tuple[bool, bool, str]:
        oauth = self._oauth
        assert oauth is not None
        request = oauth.registration_notice(verdict["localpart"], verdict["user_id"], verdict["displayname"])
        if request is None:
            return True, False, ""
        delivered, why = _native.OAuth.webhook_delivered(**await self._send(request))
        return delivered, oauth.webhook_interrupts, why

    async def oidc(self, token: str, username: str) -> dict[str, Any]:
        oidc = self._oidc
        assert oidc is not None
        discovery = oidc.discovery_request()
        if discovery is not None:
            ok, why = oidc.discovered(**await self._send(discovery))
            if not ok:
                logger.warning("OIDC discovery at %s failed: %s", discovery.url, printable(why))
        request = oidc.introspection_request(token)
        if request is None:
            return {
                "result": "rejected",
                "reason": "introspection_failed",
                "detail": "the introspection endpoint is not known",
            }
        return oidc.decide(username, self._api.server_name, **await self._send(request))

    async def _send(self, request: Any) -> dict[str, Any]:
        answer = await outbound.send_request(self._api, self._yieldable, request)
        answer.pop("cache_control", None)
        return answer


class ViaDaemon:
    """Verdicts from the verifier daemon, which holds the secrets and makes the requests. What it
    answers is checked for shape, so that a peer that is not the daemon logs nobody in."""

    def __init__(self, client: Any, server_name: str) -> None:
        self._client = client
        self._server_name = server_name

    async def oauth(self, token: str, username: str) -> dict[str, Any]:
        answer = await self._call(
            "/v1/oauth/verify", {"token": token, "user": username, "server_name": self._server_name}
        )
        if answer["result"] == "accepted":
            _check_shape(
                answer,
                self._server_name,
                {
                    "displayname": (str, type(None)),
                    "admin": (bool, type(None)),
                    "email": (str, type(None)),
                    "issuer": (str,),
                    "subject": (str,),
                    "may_register": (bool,),
                    "check_external_id": (bool,),
                    "notify_on_registration": (bool,),
                    "replay_key": (str, type(None)),
                    "replay_until": (int, type(None)),
                },
            )
        return answer

    async def notify(self, verdict: dict[str, Any]) -> tuple[bool, bool, str]:
        body = {"localpart": verdict["localpart"], "user_id": verdict["user_id"], "displayname": verdict["displayname"]}
        # The daemon calls the webhook: never sent twice, so never retried.
        status, answer = await self._client.call("/v1/oauth/registration", body, repeatable=False)
        if status != 200 or not all(
            isinstance(answer.get(k), t) for k, t in (("delivered", bool), ("interrupt", bool), ("detail", str))
        ):
            raise _RefusedError(verdict["user_id"], "daemon_error", f"HTTP {status}: not a webhook answer", error=True)
        return answer["delivered"], answer["interrupt"], answer["detail"]

    async def oidc(self, token: str, username: str) -> dict[str, Any]:
        answer = await self._call(
            "/v1/oidc/verify", {"token": token, "user": username, "server_name": self._server_name}
        )
        if answer["result"] == "accepted":
            _check_shape(answer, self._server_name, {"may_register": (bool,)})
        return answer

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            status, answer = await self._client.call(path, body)
        except DaemonUnavailableError as e:
            raise _RefusedError(body.get("user"), e.reason, str(e), error=True) from None
        if status == 200:
            return {**answer, "result": "accepted"}
        if status == 403 and isinstance(answer.get("reason"), str):
            return {"result": "rejected", "reason": answer["reason"], "detail": ""}
        raise _RefusedError(body.get("user"), "daemon_error", f"HTTP {status} from {path}", error=True)


def _check_shape(answer: dict[str, Any], server_name: str, types: dict[str, tuple[type, ...]]) -> None:
    """A verdict names a valid local user and has the documented types, or the login fails."""
    localpart = answer.get("localpart")
    user_id = answer.get("user_id")
    ok = (
        isinstance(localpart, str)
        and isinstance(user_id, str)
        and _native.localpart(localpart, server_name) == localpart
        and user_id == f"@{localpart}:{server_name}"
        and all(isinstance(answer.get(key), allowed) for key, allowed in types.items())
    )
    if not ok:
        raise _RefusedError(user_id if isinstance(user_id, str) else None, "daemon_error", "not a verdict", error=True)
