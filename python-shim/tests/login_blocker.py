"""A Synapse spam checker for the tests: refuses the logins of the users in its config."""

from __future__ import annotations

from typing import Any

from synapse.api.errors import Codes
from synapse.module_api import NOT_SPAM, ModuleApi


class LoginBlocker:
    def __init__(self, config: dict[str, Any], api: ModuleApi) -> None:
        self._blocked = set(config.get("users", []))
        api.register_spam_checker_callbacks(check_login_for_spam=self.check_login_for_spam)

    async def check_login_for_spam(self, user_id: str, *args: Any, **kwargs: Any) -> Any:
        return Codes.FORBIDDEN if user_id in self._blocked else NOT_SPAM
