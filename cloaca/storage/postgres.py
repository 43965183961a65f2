"""``PostgresStore``: the ``Store`` protocol on asyncpg, on Cloacina 0.3.1's layout.

One asyncpg pool of ``pool_size`` connections (one opened eagerly, the rest on
demand) to the database named in the URL (API.md section 0 item 10). Every
connection starts with ``TimeZone = 'UTC'`` and, with a ``schema``, with
``search_path = "<schema>", public`` (SCHEMA.md 8), both sent in the start-up
packet, so the ``.sql`` files never name a schema. ``open()`` creates or verifies
the layout under an advisory lock (``pg_migrate``). ``apply()`` writes a batch
atomically, nearly always as one statement in its own implicit transaction
(``pg_apply.write_batch``); it is strict (unknown rows, non-ready starts,
duplicate ids and naive times are refused and nothing of the batch is kept),
hence not idempotent. Driver errors leave as ``StorageError`` subclasses
(``pg_errors``); after a lost connection the pool's connections are expired, so
the next call reconnects.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime

import asyncpg

from cloaca.storage.errors import StorageError
from cloaca.storage.identifiers import quote_ident, schema_name
from cloaca.storage.journal import JournalEvent
from cloaca.storage.pg_apply import write_batch
from cloaca.storage.pg_connect import connect
from cloaca.storage.pg_errors import (
    DRIVER_ERRORS,
    is_connection_lost,
    translate_connect_error,
    translate_error,
)
from cloaca.storage.pg_migrate import prepare_schema
from cloaca.storage.pg_schedules import PgScheduleStore
from cloaca.storage.pg_url import PostgresTarget, parse_postgres_url
from cloaca.storage.protocol import ExecutionRow, TaskRow
from cloaca.storage.queries import load_queries

__all__ = ("PostgresStore",)

# TimeoutError is an OSError subclass, so connect timeouts are covered too.


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing beyond what asyncpg always does.

    asyncpg rolls back a transaction left open and drops listeners before it
    calls this; its default reset then sends ``RESET ALL``, ``UNLISTEN *``,
    ``CLOSE ALL`` and an advisory unlock, one more round trip per use. The store
    leaves no session state behind (settings come in the start-up packet, locks
    are transaction-scoped, LISTEN uses its own connection), so it is skipped.
    """


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)


def _uuid(value: uuid.UUID) -> uuid.UUID:
    # asyncpg hands out its own uuid.UUID subclass; the protocol promises uuid.UUID.
    return uuid.UUID(bytes=value.bytes)


def _task_row(r: asyncpg.Record) -> TaskRow:
    return TaskRow(
        id=_uuid(r["id"]),
        execution_id=_uuid(r["pipeline_execution_id"]),
        task_name=r["task_name"],
        status=r["status"],
        attempt=r["attempt"],
        max_attempts=r["max_attempts"],
        started_at=_aware(r["started_at"]),
        completed_at=_aware(r["completed_at"]),
        retry_at=_aware(r["retry_at"]),
        error_details=r["error_details"],
        last_error=r["last_error"],
        recovery_attempts=r["recovery_attempts"],
        trigger_rules=r["trigger_rules"],
        output_context_json=r["output_context_json"],
        created_at=r["created_at"].replace(tzinfo=UTC),
        updated_at=r["updated_at"].replace(tzinfo=UTC),
    )


def _execution_row(r: asyncpg.Record, tasks: tuple[TaskRow, ...]) -> ExecutionRow:
    return ExecutionRow(
        id=_uuid(r["id"]),
        pipeline_name=r["pipeline_name"],
        pipeline_version=r["pipeline_version"],
        status=r["status"],
        context_json=r["context_json"],
        started_at=r["started_at"].replace(tzinfo=UTC),
        completed_at=_aware(r["completed_at"]),
        error_details=r["error_details"],
        recovery_attempts=r["recovery_attempts"],
        created_at=r["created_at"].replace(tzinfo=UTC),
        updated_at=r["updated_at"].replace(tzinfo=UTC),
        tasks=tasks,
    )


class PostgresStore(PgScheduleStore):
    """The PostgreSQL backend of the ``Store`` protocol.

    Args:
        url: ``postgres[ql]://user:password@host:port/database?options``; the
            options ``sslmode``, ``connect_timeout`` and ``application_name``
            are passed to the driver.
        pool_size: Most connections the pool holds (``db_pool_size``).
        schema: A tenant schema (API.md 4.16): validated, lower-cased, created
            if missing and put first on every connection's search path.

    Raises:
        InvalidDatabaseUrl: The URL cannot be parsed (a ``StorageError``).
        InvalidIdentifier: ``schema`` breaks the rules of SCHEMA.md section 8
            (a ``ValueError``); raised before any connection is made.
        ValueError: ``pool_size`` is below 1.
    """

    def __init__(
        self, url: str, *, pool_size: int = 10, schema: str | None = None
    ) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, not {pool_size}")
        self._target: PostgresTarget = parse_postgres_url(url)
        self._schema = None if schema is None else schema_name(schema)
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        # The journal's own pooled connection (see journal_connection).
        self._journal: asyncpg.Connection | None = None
        self._journal_busy = False

    @property
    def display_url(self) -> str:
        """The database URL with any password replaced by ``***``."""
        return self._target.display_url

    @property
    def schema(self) -> str | None:
        """The folded tenant schema name, or None for the default search path."""
        return self._schema

    def _server_settings(self) -> dict[str, str]:
        settings = dict(self._target.server_settings)
        # Naive UTC timestamps are what 0.3.1 stores (SCHEMA.md 2.2); a UTC session
        # keeps the CURRENT_TIMESTAMP defaults (run_on) in UTC as well.
        settings["TimeZone"] = "UTC"
        if self._schema is not None:
            settings["search_path"] = f"{quote_ident(self._schema)}, public"
        return settings

    async def open(self) -> None:
        """Connect, then create or verify the layout (SCHEMA.md section 4).

        Raises:
            StorageUnavailable: The server is unreachable, refused the login or
                has no such database (the message names host, port, database
                and the masked URL).
            SchemaMismatch: The schema holds a partial, foreign or newer layout.
            MigrationFailed: Creating the layout failed; nothing was created.
        """
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                connect=connect,
                min_size=1,
                max_size=self._pool_size,
                reset=_keep_session,
                server_settings=self._server_settings(),
                **self._target.connect_kwargs(),
            )
        except DRIVER_ERRORS as exc:
            raise translate_connect_error(exc, self._target) from exc
        opened = False
        try:
            async with pool.acquire() as conn:
                await prepare_schema(conn, self._schema, display_url=self.display_url)
            opened = True
        except DRIVER_ERRORS as exc:
            where = f"schema {self._schema!r}" if self._schema else "the database"
            raise translate_error(
                exc,
                self._target,
                action=f"create or verify Cloacina's layout in {where}",
            ) from exc
        finally:
            if not opened:
                # Whatever went wrong (also cancellation), no connection stays open.
                pool.terminate()
        self._pool = pool

    async def close(self) -> None:
        """Release every connection. Idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            # A batch in flight releases it itself; pool.close() waits for that.
            await self._drop_journal(pool)
            await pool.close()

    async def _drop_journal(self, pool: asyncpg.Pool) -> None:
        """Give the journal connection back to the pool, unless a batch uses it."""
        if self._journal_busy:
            return
        journal, self._journal = self._journal, None
        if journal is None:
            return
        # On an error the pool terminated it; the next batch connects again.
        with suppress(*DRIVER_ERRORS):
            await pool.release(journal)

    @asynccontextmanager
    async def journal_connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection for one journal batch, outside any transaction.

        Batches come one at a time from the runtime's Persistence actor, so the
        store keeps one pooled connection for them instead of taking one from
        the pool per batch: no acquire and release per commit, and the batch
        statements stay prepared and planned on one server backend. A batch
        arriving while that connection is in use (a recovery batch of the
        intake, say), and every batch of a pool of one, takes a pooled one. On
        anything but a refused batch (a lost connection, a cancellation) the
        connection goes back to the pool, which closes or resets it, and the
        next batch takes another.

        Raises:
            StorageError: The store is not open.
        """
        pool = self._require_pool()
        if self._journal_busy or self._pool_size == 1:
            async with pool.acquire() as conn:
                yield conn
            return
        self._journal_busy = True
        keep = False
        try:
            if self._journal is None:
                self._journal = await pool.acquire()
            yield self._journal
            keep = True
        except StorageError:
            keep = True  # refused by the store: the connection is fine
            raise
        finally:
            self._journal_busy = False
            if not keep or self._pool is not pool:
                # Lost, cancelled mid-statement, or the store closed meanwhile.
                await self._drop_journal(pool)

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StorageError(
                f"the PostgreSQL store for {self.display_url} is not open",
                url=self.display_url,
            )
        return self._pool

    async def _failed(
        self, pool: asyncpg.Pool, exc: BaseException, action: str
    ) -> StorageError:
        if is_connection_lost(exc):
            # Every pooled connection may be dead (a server restart or a mass
            # pg_terminate_backend); expiring them makes the next call reconnect.
            await self._drop_journal(pool)
            await pool.expire_connections()
        return translate_error(exc, self._target, action=action)

    async def apply(self, entries: Sequence[JournalEvent]) -> None:
        """Write ``entries`` in one transaction (group commit).

        Entries of different executions are written together, usually as one
        statement; entries writing one row keep their order (``pg_apply``).
        Not idempotent: re-applying a batch that committed raises ``Conflict``.

        Args:
            entries: The batch, in order.

        Raises:
            StorageUnavailable: The connection was lost; nothing was written,
                unless the commit itself was cut off (then the outcome is
                unknown: a re-applied batch that did commit raises ``Conflict``).
            Conflict: A duplicate id (unique constraint), or a start of a task
                that is not ``Ready``/``NotStarted``; nothing was written.
            StorageError: An entry names a row that does not exist, carries a
                naive time, or the server rejected it; nothing was written.
        """
        if not entries:
            return
        pool = self._require_pool()
        try:
            async with self.journal_connection() as conn:
                await write_batch(conn, entries)
        except StorageError as exc:
            # Refused by the store itself (unknown row, conditional start, naive
            # time); the transaction was rolled back. Say where.
            raise type(exc)(
                f"PostgreSQL {self._target.location} ({self.display_url}) refused a "
                f"batch of {len(entries)} journal entries: {exc}",
                url=self.display_url,
            ) from exc
        except DRIVER_ERRORS as exc:
            raise await self._failed(
                pool, exc, f"apply a batch of {len(entries)} journal entries"
            ) from exc

    async def _executions(
        self, query: str, *args: object, with_tasks: bool, action: str
    ) -> list[ExecutionRow]:
        pool = self._require_pool()
        q = load_queries("postgres")
        try:
            async with pool.acquire() as conn:
                rows = await conn.fetch(query, *args)
                tasks: dict[uuid.UUID, list[TaskRow]] = {}
                if with_tasks and rows:
                    ids = [r["id"] for r in rows]
                    for t in await conn.fetch(q["select_tasks"], ids):
                        row = _task_row(t)
                        tasks.setdefault(row.execution_id, []).append(row)
        except DRIVER_ERRORS as exc:
            raise await self._failed(pool, exc, action) from exc
        return [_execution_row(r, tuple(tasks.get(_uuid(r["id"]), ()))) for r in rows]

    async def load_unfinished(self) -> list[ExecutionRow]:
        """Executions in ``Pending``/``Running``, oldest first, with their tasks."""
        return await self._executions(
            load_queries("postgres")["select_unfinished_executions"],
            with_tasks=True,
            action="load unfinished executions",
        )

    async def get_execution(self, execution_id: uuid.UUID) -> ExecutionRow | None:
        """One execution with its tasks, or None.

        Args:
            execution_id: The execution's id.
        """
        rows = await self._executions(
            load_queries("postgres")["select_execution"],
            execution_id,
            with_tasks=True,
            action=f"read execution {execution_id}",
        )
        return rows[0] if rows else None

    async def list_executions(
        self,
        *,
        pipeline_name: str | None = None,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[ExecutionRow]:
        """Executions newest first (by ``started_at``), without their tasks.

        Args:
            pipeline_name: Only executions of this workflow.
            status: Only executions in this status.
            limit: At most this many rows.
            offset: Rows to skip first.
        """
        return await self._executions(
            load_queries("postgres")["list_executions"],
            pipeline_name,
            status,
            limit,
            offset,
            with_tasks=False,
            action="list executions",
        )
