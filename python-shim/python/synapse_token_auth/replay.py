"""Single-use tokens: which tokens have logged in, in Synapse's own database.

The verifier (in-process or the daemon) names each accepted token by a replay key and says until
when it must be remembered; this store decides whether the key was used before. Every Synapse
process (main and workers) shares the database, so a token logs in once across all of them, and
the daemon stays stateless.

The table is the module's own, created idempotently by each process (nothing makes a worker wait
for the main process's module). Recording is one atomic first-use-wins statement: of any number
of concurrent logins with one token, in any processes, exactly one inserts the row.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from synapse.module_api import ModuleApi

logger = logging.getLogger(__name__)

TABLE = "synapse_token_auth_used_tokens"
#: How often the process that runs background tasks deletes expired rows.
PURGE_INTERVAL_MS = 5 * 60 * 1000
# A constant no other code uses as a PostgreSQL advisory lock key ("sta_used" in ASCII).
_DDL_LOCK_KEY = 0x7374615F75736564

_SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        replay_key TEXT NOT NULL PRIMARY KEY,
        user_id TEXT NOT NULL,
        used_until BIGINT NOT NULL
    )""",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_until ON {TABLE} (used_until)",
)


def _create_schema_txn(txn: Any) -> None:
    # Not part of the ModuleApi, but stable for years; imported here so that the module loads
    # without it in unit tests.
    from synapse.storage.engines import PostgresEngine

    if isinstance(txn.database_engine, PostgresEngine):
        # Concurrent CREATE TABLE IF NOT EXISTS of one table fails on PostgreSQL (a unique
        # violation in pg_type) when several processes start together, and Synapse does not
        # retry that error. The lock serialises them; it is released at commit.
        txn.execute("SELECT pg_advisory_xact_lock(?)", (_DDL_LOCK_KEY,))
    for statement in _SCHEMA:
        txn.execute(statement)


def _record_txn(txn: Any, key: str, user_id: str, until: int, now: int) -> bool:
    # `?` on both engines: Synapse rewrites it to `%s` for psycopg2. The row of a key whose time
    # has passed (not yet purged) is taken over: only a token that reused a dead token's `jti`
    # can get there. Synapse may run this function again after a serialization failure on
    # PostgreSQL, so it has no side effects besides the statement.
    txn.execute(
        f"INSERT INTO {TABLE} (replay_key, user_id, used_until) VALUES (?, ?, ?)"
        f" ON CONFLICT (replay_key) DO UPDATE SET user_id = excluded.user_id, used_until = excluded.used_until"
        f" WHERE {TABLE}.used_until < ?",
        (key, user_id, until, now),
    )
    return txn.rowcount == 1


def _purge_txn(txn: Any, now: int) -> int:
    txn.execute(f"DELETE FROM {TABLE} WHERE used_until < ?", (now,))
    return txn.rowcount


class ReplayStoreUnavailableError(Exception):
    """The database could not record the token: the login must fail closed."""


class UsedTokens:
    """The used-token table of one Synapse process."""

    def __init__(self, api: ModuleApi) -> None:
        self._api = api
        self._schema_ready = False
        # Modules are built once the reactor runs and before the listeners open: start creating
        # the table now, and let the first login wait for it (or retry it) if it is not done.
        api.run_as_background_process("synapse_token_auth_used_tokens_schema", self._create_schema_quietly)
        # Only the instance that runs background tasks (`run_background_tasks_on`, the main
        # process by default) purges: one cheap indexed DELETE for all processes, and an expired
        # row left a little longer only costs space (it is past the token's `exp` plus leeway,
        # so the verifier refuses that token as expired anyway). Without the check every worker
        # would log "Not running looping call" at WARNING.
        if api.should_run_background_tasks():
            api.looping_background_call(self.purge, PURGE_INTERVAL_MS, desc="synapse_token_auth_used_tokens_purge")

    async def _create_schema_quietly(self) -> None:
        try:
            await self._ensure_schema()
        except Exception:
            logger.exception("Could not create the table %s; the first single-use login will retry", TABLE)

    async def _ensure_schema(self) -> None:
        if not self._schema_ready:
            await self._api.run_db_interaction("synapse_token_auth_used_tokens_schema", _create_schema_txn)
            self._schema_ready = True

    async def record(self, key: str, user_id: str, until: int) -> bool:
        """True for the first use of `key` (in any process), False for a replay. Raises
        ReplayStoreUnavailableError when the database fails."""
        try:
            await self._ensure_schema()
            return await self._api.run_db_interaction(
                "synapse_token_auth_used_tokens_record", _record_txn, key, user_id, until, int(time.time())
            )
        except Exception as e:
            # Whatever broke (the table dropped, the database gone), create the table again
            # before the next login rather than failing every login until a restart.
            self._schema_ready = False
            raise ReplayStoreUnavailableError(f"{type(e).__name__}: {e}") from e

    async def purge(self, now: int | None = None) -> int:
        """Deletes the rows whose time has passed; returns how many."""
        await self._ensure_schema()
        deleted = await self._api.run_db_interaction(
            "synapse_token_auth_used_tokens_purge", _purge_txn, int(time.time()) if now is None else now
        )
        if deleted:
            logger.info("Purged %d expired single-use token records", deleted)
        return deleted
