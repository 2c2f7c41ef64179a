"""The Synapse module: the ``com.famedly.login.token`` login type.

Synapse calls :meth:`TokenAuthenticator.check_auth` with the login's user and token. The token is
verified (in-process, or by the verifier daemon), the verdict is checked against the login, the
user is found or registered through the public ModuleApi, and the canonical user id is returned
with a callback that applies the admin and display name claims once Synapse has accepted the
login. Every refusal returns ``None`` (Synapse answers 403 M_FORBIDDEN) and is logged once, with
the user and a reason code; nothing ever raises into Synapse.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from synapse.module_api import ModuleApi, make_deferred_yieldable
from synapse.module_api.errors import SynapseError
from twisted.web import resource

from synapse_token_auth import _native, accounts, claims, metrics
from synapse_token_auth import config as config_module
from synapse_token_auth import verdict as verdict_module
from synapse_token_auth.daemon_client import DaemonClient, DaemonUnavailableError
from synapse_token_auth.logtext import printable, qualified
from synapse_token_auth.oauth import OAUTH_LOGIN_TYPE, OIDC_LOGIN_TYPE, InProcess, OAuthLogins, ViaDaemon
from synapse_token_auth.published import KeyFetcher
from synapse_token_auth.replay import ReplayStoreUnavailableError, UsedTokens
from synapse_token_auth.reserved import ReservedAccounts, ReservedCheckUnavailableError

logger = logging.getLogger(__name__)

LOGIN_TYPE = "com.famedly.login.token"
LOGIN_FIELDS = ("token",)

#: Longest user id Synapse accepts, in bytes (the Matrix spec's limit).
MAX_USER_BYTES = 255
# A compact JWS is three base64url parts joined by dots (RFC 7515 §7.1). Anything else is refused
# before the verifier sees it: a control character or a quote would grow sixfold or twofold in
# the daemon's JSON request, past its body bound, and a lone surrogate cannot cross into Rust.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_.-]*")

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
        self._reserved = ReservedAccounts(api)
        daemon_types = config.daemon.login_types if config.daemon is not None else ()
        jwt_login = config.verifier is not None or LOGIN_TYPE in daemon_types
        # Single-use tokens: in embedded mode the policy says whether they are on; in daemon mode
        # only the daemon knows, so the (small, empty) table is there for its verdicts to use.
        self._used_tokens = (
            UsedTokens(api)
            if daemon_types
            or (config.verifier is not None and config.verifier.single_use_tokens)
            or (config.oauth is not None and config.oauth.single_use_tokens)
            else None
        )
        in_process = InProcess(api, make_deferred_yieldable, config.oauth, config.oidc)
        via_daemon = ViaDaemon(self._daemon, api.server_name) if self._daemon is not None else None
        oauth_source = via_daemon if OAUTH_LOGIN_TYPE in daemon_types else in_process if config.oauth else None
        oidc_source = via_daemon if OIDC_LOGIN_TYPE in daemon_types else in_process if config.oidc else None
        self._others = OAuthLogins(api, self._reserved, oauth_source, oidc_source, self._used_tokens)
        checkers: dict[tuple[str, tuple[str, ...]], Any] = {}
        if jwt_login:
            checkers[(LOGIN_TYPE, LOGIN_FIELDS)] = self.check_auth
        if oauth_source is not None:
            checkers[(OAUTH_LOGIN_TYPE, LOGIN_FIELDS)] = self.check_oauth
        if config.oauth is not None:
            _require_external_id_reader(api, config.oauth.check_external_id)
            if config.oauth.metadata_resource is not None:
                metadata = json.loads(config.oauth.metadata_resource)
                api.register_web_resource(f"/_famedly/login/{metadata['name']}", MetadataResource(metadata))
        if oidc_source is not None:
            checkers[(OIDC_LOGIN_TYPE, LOGIN_FIELDS)] = self.check_oidc_auth
        if config.oidc is not None:
            api.register_web_resource(
                f"/_famedly/login/{OIDC_LOGIN_TYPE}", MetadataResource(json.loads(config.oidc.metadata()))
            )
        if via_daemon is not None and (oauth_source is via_daemon or oidc_source is via_daemon):
            # The daemon knows the metadata resources: any name under /_famedly/login/ is asked.
            api.register_web_resource("/_famedly/login", DaemonMetadata(self._daemon))
        api.register_password_auth_provider_callbacks(auth_checkers=checkers)
        if config.verifier is not None:
            logger.info("JWT login enabled (embedded verifier): %s", config.verifier.effective_config())
        elif self._daemon is not None:
            logger.info("JWT login enabled (verifier daemon at %s)", self._daemon.description)
        if config.oauth is not None:
            logger.info("OAuth login enabled: %s", config.oauth.effective_config())
        if config.oidc is not None:
            logger.info("OIDC login enabled: %s", config.oidc.metadata())

    @staticmethod
    def parse_config(config: Any) -> config_module.ModuleConfig:
        return config_module.parse(config)

    async def check_auth(self, username: str, login_type: str, login_dict: dict[str, Any]) -> CheckAuthResult:
        """Returns ``(canonical_user_id, callback)`` for a valid token, else ``None``. Never raises."""
        try:
            return await self._check_auth(username, login_type, login_dict)
        except Exception:
            # A bug or a database error: refuse this login, keep Synapse serving.
            metrics.login_failed(LOGIN_TYPE, "internal_error")
            logger.exception(
                "JWT login refused for %s: internal_error (unexpected error)", qualified(username, self._server_name)
            )
            return None

    # The original module's method name, for code that calls it directly.
    check_jwt_auth = check_auth

    async def check_oauth(self, username: str, login_type: str, login_dict: dict[str, Any]) -> CheckAuthResult:
        """The ``com.famedly.login.token.oauth`` login type (``oauth.py``). Never raises."""
        return await self._others.check_oauth(username, login_type, login_dict)

    async def check_oidc_auth(self, username: str, login_type: str, login_dict: dict[str, Any]) -> CheckAuthResult:
        """The ``com.famedly.login.token.oidc`` login type (``oauth.py``). Never raises."""
        return await self._others.check_oidc(username, login_type, login_dict)

    @property
    def _server_name(self) -> str:
        return self._api.server_name

    async def _check_auth(self, username: str, login_type: str, login_dict: dict[str, Any]) -> CheckAuthResult:
        if login_type != LOGIN_TYPE:
            return None
        token = login_dict.get("token")
        problem = _input_problem(username, token)
        if problem is not None:
            return self._reject(username, problem)

        with metrics.VERIFY_DURATION.time():
            answer = await self._verify(token, username)
        if answer is None:
            return None
        if answer["result"] != "accepted":
            return self._reject(username, answer["reason"], answer.get("alg"), answer.get("kid"))
        try:
            verdict = verdict_module.check(answer, username, self._server_name)
        except verdict_module.InvalidVerdictError as e:
            return self._refuse_error(username, "daemon_error" if self._daemon else "internal_error", str(e))

        # The token is recorded here: after it verified, before the account checks, registration
        # and Synapse's own checks. A login refused after this point (unknown user, a reserved
        # account, a deactivated or locked user, a spam checker) has used up its token: safe, and
        # the client asks for a new one. The opposite order would let every concurrent login with
        # one token pass those checks before the first of them records it, and claims and devices
        # would already have been applied by then.
        if verdict.replay_key is not None and verdict.replay_until is not None:
            if self._used_tokens is None:
                # Embedded mode never gets here: its verifier and this module agree on the policy.
                return self._refuse_error(verdict.user_id, "internal_error", "a replay key but no store for it")
            try:
                first_use = await self._used_tokens.record(verdict.replay_key, verdict.user_id, verdict.replay_until)
            except ReplayStoreUnavailableError as e:
                return self._refuse_error(verdict.user_id, "replay_store_unavailable", str(e))
            if not first_use:
                return self._reject(verdict.user_id, "token_replayed", verdict.alg, verdict.kid)

        try:
            return await self._log_in(verdict)
        except ReservedCheckUnavailableError as e:
            return self._refuse_error(verdict.user_id, "internal_error", str(e))

    async def _verify(self, token: str, username: str) -> dict[str, Any] | None:
        """The verifier's answer, or None (logged) when the daemon gave none."""
        if self._keys is not None:
            return await self._keys.verify(token, username, self._server_name)
        if self._daemon is None:
            assert self._config.verifier is not None
            return self._config.verifier.verify(token, username, self._server_name)
        try:
            return await self._daemon.verify(token, username, self._server_name)
        except DaemonUnavailableError as e:
            metrics.login_failed(LOGIN_TYPE, e.reason)
            logger.error(
                "JWT login refused for %s: verifier daemon at %s gave no verdict (%s: %s)",
                qualified(username, self._server_name),
                self._daemon.description,
                e.reason,
                e,
            )
            return None

    async def _log_in(self, verdict: verdict_module.Verdict) -> CheckAuthResult:
        reason = self._reserved.namespace_reason(verdict.user_id)
        if reason is not None:
            return self._reject(verdict.user_id, reason, verdict.alg, verdict.kid)

        canonical = await accounts.existing(self._api, verdict.user_id)
        registered = False
        if canonical is None:
            if not verdict.may_register:
                return self._reject(verdict.user_id, "unknown_user", verdict.alg, verdict.kid)
            canonical, registered = await self._register(verdict)
            if canonical is None:
                return None
        if not registered:
            reason = await self._reserved.account_reason(canonical)
            if reason is not None:
                return self._reject(canonical, reason, verdict.alg, verdict.kid)

        # A new account got its display name at registration; an existing one (including one a
        # concurrent login registered a moment ago) gets it on every login unless turned off.
        update_displayname = not registered and verdict.update_displayname_on_login
        callback = claims.after_login(
            self._api, canonical, verdict.admin, verdict.displayname if update_displayname else None
        )
        logger.info(
            "JWT login accepted for %s (alg=%s kid=%s key=%s%s)",
            canonical,
            printable(verdict.alg),
            printable(verdict.kid or ""),
            printable(verdict.key),
            ", registered" if registered else "",
        )
        metrics.login_accepted(LOGIN_TYPE)
        return canonical, callback

    async def _register(self, verdict: verdict_module.Verdict) -> tuple[str | None, bool]:
        """The new account's id and True, or the id a concurrent login registered and False, or
        (None, False) when registration failed (logged)."""
        try:
            # Never admin here: the admin claim waits, like on every login, until Synapse has
            # accepted the login. A login refused right after registration (a spam checker,
            # require_approval) must not leave behind a server admin that Synapse never let in.
            # The display name is part of creating the account, not a change to one.
            canonical, registered = await accounts.register(
                self._api, verdict.localpart, verdict.user_id, verdict.displayname
            )
        except SynapseError as e:
            metrics.login_failed(LOGIN_TYPE, "internal_error")
            logger.warning("JWT login refused for %s: registration failed: %s", verdict.user_id, e)
            return None, False
        if canonical is None:
            metrics.login_failed(LOGIN_TYPE, "internal_error")
            logger.warning("JWT login refused for %s: user in use but not found", verdict.user_id)
        return canonical, registered

    def _reject(self, user: Any, reason: str, alg: str | None = None, kid: str | None = None) -> None:
        metrics.login_rejected(LOGIN_TYPE, reason)
        logger.info(
            "JWT login rejected for %s: %s (alg=%s kid=%s)",
            qualified(user, self._server_name),
            printable(reason),  # in daemon mode, whatever the peer said
            printable(alg or ""),
            printable(kid or ""),
        )
        return None

    def _refuse_error(self, user: Any, reason: str, detail: str) -> None:
        """A refusal that is not the client's doing: an operator has to look."""
        metrics.login_failed(LOGIN_TYPE, reason)
        if self._daemon is not None and reason == "daemon_error":
            where = f"verifier daemon at {self._daemon.description} gave an invalid verdict"
        elif reason == "replay_store_unavailable":
            where = "the single-use token could not be recorded in Synapse's database"
        else:
            where = "the module could not check the login"
        logger.error("JWT login refused for %s: %s (%s: %s)", qualified(user, self._server_name), where, reason, detail)
        return None


def _input_problem(username: Any, token: Any) -> str | None:
    """A reason code for a login the verifier need not see, or None."""
    if not isinstance(token, str):
        return "malformed_token"
    if not isinstance(username, str):
        return "invalid_user"
    try:
        user_bytes = len(username.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate, valid in JSON
        return "invalid_user"
    if user_bytes > MAX_USER_BYTES:
        return "invalid_user"
    if len(token) > _native.MAX_TOKEN_BYTES:
        return "token_too_large"
    if not _COMPACT_JWS.fullmatch(token):
        return "malformed_token"
    return None


class MetadataResource(resource.Resource):
    """A JSON document for clients, served as the original serves it (``/_famedly/login/…``)."""

    isLeaf = True  # noqa: N815 (Twisted's name)

    def __init__(self, document: dict[str, Any]) -> None:
        super().__init__()
        self._body = json.dumps(document).encode("utf-8")

    def render_GET(self, request: Any) -> bytes:  # noqa: N802 (Twisted's name)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"access-control-allow-origin", b"*")
        return self._body


def _require_external_id_reader(api: ModuleApi, required: bool) -> None:
    """``check_external_id`` reads the account's external ids from Synapse's store, which
    ModuleApi does not offer; a Synapse without that method must fail at start-up, not let every
    existing account in unchecked. (With the daemon, whether the check is on is only known per
    login: its absence then refuses those logins, `internal_error`.)"""
    store = getattr(api, "_store", None)
    if required and not callable(getattr(store, "get_external_ids_by_user", None)):
        raise config_module.ConfigError(
            "`oauth.check_external_id`: this Synapse does not offer the account's external ids "
            "(store.get_external_ids_by_user); set `check_external_id: false` to log in without the check"
        )


class DaemonMetadata(resource.Resource):
    """``/_famedly/login/NAME`` in daemon mode: the daemon's ``/v1/login-metadata/NAME``."""

    def __init__(self, client: DaemonClient) -> None:
        super().__init__()
        self._client = client

    def getChild(self, path: bytes, request: Any) -> resource.Resource:  # noqa: N802 (Twisted's name)
        return _DaemonMetadataDocument(self._client, path.decode("utf-8", "replace"))


class _DaemonMetadataDocument(resource.Resource):
    isLeaf = True  # noqa: N815 (Twisted's name)

    def __init__(self, client: DaemonClient, name: str) -> None:
        super().__init__()
        self._client = client
        self._name = name

    def render_GET(self, request: Any) -> Any:  # noqa: N802 (Twisted's name)
        from twisted.internet import defer
        from twisted.web.server import NOT_DONE_YET

        async def answer() -> None:
            status, body = 404, {"errcode": "M_NOT_FOUND", "error": "no such resource"}
            if re.fullmatch(r"[A-Za-z0-9._-]+", self._name):
                try:
                    found, document = await self._client.call(f"/v1/login-metadata/{self._name}", None)
                    if found == 200:
                        status, body = 200, document
                except Exception as e:
                    logger.warning("metadata resource %s: the daemon gave no answer (%s)", self._name, e)
                    status, body = 502, {"errcode": "M_UNKNOWN", "error": "verifier daemon unavailable"}
            request.setResponseCode(status)
            request.setHeader(b"content-type", b"application/json")
            request.setHeader(b"access-control-allow-origin", b"*")
            request.write(json.dumps(body).encode("utf-8"))
            request.finish()

        defer.ensureDeferred(answer())
        return NOT_DONE_YET
