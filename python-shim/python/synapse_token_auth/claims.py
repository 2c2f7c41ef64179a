"""The token's admin and display name claims, applied once Synapse has accepted the login.

The auth checker runs before Synapse's own checks: a deactivated (even erased), locked,
unapproved or spam-blocked account still gets that far and is refused afterwards. Applying the
claims there would promote a deactivated account to server admin or restore an erased display
name. Synapse runs the callback returned beside the user id only once it has passed those checks
and issued the access token (``LoginRestServlet._complete_login``), and not at all for
user-interactive re-authentication, which is not a login.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from synapse.module_api import ModuleApi
from synapse.types import UserID

logger = logging.getLogger(__name__)

LoginCallback = Callable[[Any], Awaitable[None]]


def after_login(api: ModuleApi, user_id: str, admin: bool | None, displayname: str | None) -> LoginCallback | None:
    """The callback that applies ``admin`` (when a boolean) and ``displayname`` (when a string)
    to ``user_id``, or None when there is nothing to apply."""
    if admin is None and displayname is None:
        return None

    async def apply(_login_response: Any) -> None:
        # Synapse awaits this inside the login request, after the device exists: an exception
        # would turn an accepted login into a 500. Log it instead; the next login tries again.
        try:
            if admin is not None:
                await api.set_user_admin(user_id, admin)
            if displayname is not None:
                await _set_displayname(api, UserID.from_string(user_id), displayname)
        except Exception:
            logger.exception("JWT login of %s: the token's admin or display name claim could not be applied", user_id)

    return apply


async def _set_displayname(api: ModuleApi, user: UserID, displayname: str) -> None:
    """Sets the display name unless the profile already has it.

    Setting a profile field is a write in Synapse's database (and replication to the process
    that writes profiles, the user directory, membership events in the user's rooms) even when
    the value does not change. Concurrent first logins of one user, each carrying the same
    display name, would all make that write; on PostgreSQL they conflict (serialization
    failures) and Synapse gives up on some. Reading first leaves the account that registration
    just created, with this very name, alone.
    """
    # Synapse stores the name stripped of surrounding white space, and an empty one as none.
    stored = displayname.strip() or None
    profile = await api.get_profile_for_user(user.localpart)
    if profile.display_name != stored:
        await api.set_displayname(user, displayname)
