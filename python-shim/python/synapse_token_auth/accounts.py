"""Finding and creating accounts through the public ModuleApi, for every login type.

Liberal in what ModuleApi returns across Synapse versions and test doubles: ``check_user_exists``
may answer the stored spelling or a bool, and ``register_user`` is called with only the
arguments that carry a value.
"""

from __future__ import annotations

from typing import Any

from synapse.module_api.errors import SynapseError


async def existing(api: Any, user_id: str) -> str | None:
    """The stored spelling of ``user_id``, or None; ``True`` means "exists as given"."""
    exists = await api.check_user_exists(user_id)
    if exists is True:
        return user_id
    if not exists:
        return None
    return str(exists)


async def register(
    api: Any, localpart: str, user_id: str, displayname: str | None = None, emails: list[str] | None = None
) -> tuple[str | None, bool]:
    """The new account's id and True; or, when a concurrent login registered the same user a
    moment ago (which is success, not failure), its id and False, or None and False if it cannot
    be found. Other registration failures raise SynapseError."""
    extra: dict[str, Any] = {}
    if displayname is not None:
        extra["displayname"] = displayname
    if emails:
        extra["emails"] = emails
    try:
        return await api.register_user(localpart, **extra), True
    except SynapseError as e:
        if e.errcode != "M_USER_IN_USE":
            raise
    return await existing(api, user_id), False
