"""Accounts that Synapse keeps for others, which no JWT login may enter or create.

A token names a user by localpart, and an identity provider knows nothing of what Synapse has
handed out meanwhile: guest accounts take numeric localparts (a token for ``sub: "1"`` would
enter the guest @1), and application services own the user ids of their exclusive namespaces
and their sender, whether registered yet or not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from synapse.module_api import ModuleApi

logger = logging.getLogger(__name__)

GUEST_ACCOUNT = "guest_account"
APPSERVICE_USER = "appservice_user"


class ReservedCheckUnavailableError(Exception):
    """This Synapse does not let the module see its application services."""


class ReservedAccounts:
    def __init__(self, api: ModuleApi) -> None:
        self._api = api
        # ModuleApi has no call for the application services. The datastore's
        # get_app_services() (the list Synapse itself checks at registration, with
        # ApplicationService.is_exclusive_user) has been stable for years, but it is not public:
        # if a Synapse lacks it, every JWT login is refused rather than unchecked.
        store = getattr(api, "_store", None)
        self._app_services: Callable[[], Any] | None = getattr(store, "get_app_services", None)
        if self._app_services is None:
            logger.error(
                "JWT login: this Synapse offers no list of application services to the module; "
                "every JWT login will be refused (internal_error)"
            )

    def namespace_reason(self, user_id: str) -> str | None:
        """`appservice_user` when an application service claims ``user_id`` exclusively (its
        namespace or its sender); raises ReservedCheckUnavailableError when that is unknown."""
        if self._app_services is None:
            raise ReservedCheckUnavailableError("no list of application services in this Synapse")
        for service in self._app_services():
            if service.is_exclusive_user(user_id):
                return APPSERVICE_USER
        return None

    async def account_reason(self, user_id: str) -> str | None:
        """Why the existing account ``user_id`` is not for JWT logins, or None."""
        info = await self._api.get_userinfo_by_id(user_id)
        if info is None:
            # check_user_exists found it a moment ago; Synapse does not delete users.
            raise ReservedCheckUnavailableError(f"no user info for {user_id}")
        if info.is_guest:
            return GUEST_ACCOUNT
        # Registered by an application service, in a namespace it shares or claimed since.
        if info.appservice_id is not None:
            return APPSERVICE_USER
        # The canonical spelling may differ in case from the id checked before the lookup.
        return self.namespace_reason(user_id)
