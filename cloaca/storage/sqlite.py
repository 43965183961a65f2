"""The SQLite store: ``SqliteStore``, one aiosqlite connection, Cloacina 0.3.1's layout.

Opening reads the file before it writes anything: a corrupted file, a locked one, a
missing directory or a layout it must refuse (SCHEMA.md 4) leaves the file exactly
as it was. Only then does the store switch the file to WAL (persistent, as 0.3.1
does; never switched back), set ``synchronous`` (NORMAL by default) and create the
schema under ``BEGIN IMMEDIATE``, re-checking inside the transaction so concurrent
creators create it once. Values follow SCHEMA.md 2.1 (``sqlite_codec``).

``apply``, the hot path, hands its batch to ``sqlite_apply``, which turns it into a
few ``executemany`` calls run in aiosqlite's worker thread in one hop; the store
keeps the connection, its lock and the errors. The cron and trigger tables are
``sqlite_schedules``' (mixed in). Every driver error leaves the store as a
``StorageError`` naming the database.
"""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Final

import aiosqlite
import anyio

from cloaca.storage import journal as j
from cloaca.storage.errors import (
    Conflict,
    MigrationFailed,
    StorageError,
    StorageUnavailable,
)
from cloaca.storage.migrate import (
    MIGRATIONS_TABLE,
    Migration,
    MigrationSet,
    SchemaState,
    load_migrations,
    plan_migrations,
)
from cloaca.storage.protocol import ExecutionRow, TaskRow
from cloaca.storage.queries import load_queries
from cloaca.storage.sqlite_apply import (
    TASK_UPDATES,
    in_worker,
    phase_batch,
    write_batch,
)
from cloaca.storage.sqlite_codec import decode_uuid, execution_row, task_row
from cloaca.storage.sqlite_schedules import SqliteScheduleStore
from cloaca.storage.urls import SqliteLocation, mask_password, parse_sqlite_url

__all__ = (
    "DEFAULT_BUSY_TIMEOUT_MS",
    "SqliteStore",
    "split_statements",
)

DEFAULT_BUSY_TIMEOUT_MS: Final = 30_000
"""0.3.1's busy timeout (SCHEMA.md 2.1); ``_busy_timeout`` in the URL overrides it."""

_Q: Final = load_queries("sqlite")

# Statements of the cron and trigger tables, run by ``SqliteScheduleStore``
# (sqlite_schedules.py); checked here so a missing one fails at import.
_SCHEDULE_QUERIES: Final = (
    "insert_cron_schedule",
    "list_cron_schedules",
    "get_cron_schedule",
    "update_cron_schedule",
    "set_cron_schedule_enabled",
    "delete_cron_executions_of_schedule",
    "delete_cron_schedule",
    "due_cron_schedules",
    "earliest_cron_run",
    "claim_cron_schedule",
    "insert_cron_execution",
    "get_cron_execution",
    "link_cron_execution",
    "lost_cron_executions",
    "reclaim_cron_execution",
    "execution_exists",
    "list_cron_executions",
    "cron_execution_stats",
    "upsert_trigger_schedule",
    "list_trigger_schedules",
    "get_trigger_schedule",
    "set_trigger_enabled",
    "record_trigger_poll",
    "insert_trigger_execution",
    "insert_completed_trigger_execution",
    "link_trigger_execution",
    "complete_trigger_executions",
    "sweep_trigger_executions",
    "list_trigger_executions",
)
_missing = sorted(set(_SCHEDULE_QUERIES) - _Q.keys())
if _missing:  # pragma: no cover - a packaging error
    raise ImportError(f"sqlite queries.sql lacks {', '.join(_missing)}")
_Params = dict[str, object]

_BUSY_CODES: Final = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_LOCKED: Final = (
    "the database is locked by another connection past the busy timeout of {timeout} ms"
)
_CORRUPT: Final = "the file is not a SQLite database or is corrupted"
# Primary result codes that mean "cannot use this database now", with the words
# a person needs to act on them.
_UNAVAILABLE: Final = {
    sqlite3.SQLITE_BUSY: _LOCKED,
    sqlite3.SQLITE_LOCKED: _LOCKED,
    sqlite3.SQLITE_CANTOPEN: (
        "cannot open the file (missing directory, missing file with mode=rw/ro, "
        "or a location that cannot be written)"
    ),
    sqlite3.SQLITE_NOTADB: _CORRUPT,
    sqlite3.SQLITE_CORRUPT: _CORRUPT,
    sqlite3.SQLITE_READONLY: "the database is read-only",
    sqlite3.SQLITE_IOERR: "an I/O error occurred",
    sqlite3.SQLITE_FULL: "the disk is full",
    sqlite3.SQLITE_PERM: "access is denied",
    sqlite3.SQLITE_AUTH: "access is denied",
}
_UNIQUE_CODES: Final = frozenset(
    {sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY}
)


def split_statements(script: str, *, source: str) -> list[str]:
    """Split a migration script into single statements.

    A statement ends on the line where ``sqlite3.complete_statement`` first holds,
    so semicolons inside comments and string literals are no boundaries. Comment
    lines before a statement travel with it (SQLite records ``sqlite_master.sql``
    from the ``CREATE`` keyword on).

    Args:
        script: The file's text, one statement ending per line.
        source: The file name, for errors.

    Returns:
        The statements, in order.

    Raises:
        MigrationFailed: Text after the last complete statement.
    """
    statements: list[str] = []
    pending: list[str] = []
    for line in script.splitlines(keepends=True):
        pending.append(line)
        chunk = "".join(pending)
        if sqlite3.complete_statement(chunk):
            statements.append(chunk.strip())
            pending = []
    rest = [
        line for line in pending if line.strip() and not line.lstrip().startswith("--")
    ]
    if rest:
        raise MigrationFailed(f"{source}: incomplete statement at the end: {rest[0]!r}")
    return statements


def _free_lock() -> anyio.Lock:
    """A lock whose uncontended acquire is no trip through the event loop.

    ``fast_acquire`` exists from anyio 4.5 on; older releases get a plain lock.
    """
    try:
        return anyio.Lock(fast_acquire=True)
    except TypeError:  # pragma: no cover - anyio < 4.5
        return anyio.Lock()


class SqliteStore(SqliteScheduleStore):
    """The ``Store`` protocol on one SQLite database (API.md 4.15, SCHEMA.md).

    One aiosqlite connection serves the store (``db_pool_size`` does not apply to
    SQLite); an ``anyio.Lock`` keeps its transactions from interleaving. In-memory
    (``:memory:``) and temporary (``sqlite://``) databases are private to the store
    and gone after ``close()``. aiosqlite completes its calls on the asyncio loop,
    so the store runs on anyio's asyncio backend.

    Args:
        url: A SQLite URL (``detect_backend(url) == "sqlite"``).
        migrations: The migration set to apply; the package's SQLite set by
            default (tests pass their own to exercise ``cloaca_*`` files).

    Raises:
        InvalidDatabaseUrl: ``url`` is not a valid SQLite URL.
    """

    _connect: ClassVar[Callable[..., Any]] = staticmethod(aiosqlite.connect)
    """Makes the connection: aiosqlite's, or the simulation's inline shim
    (``cloaca.storage.sqlite_inline``)."""

    def __init__(self, url: str, *, migrations: MigrationSet | None = None) -> None:
        self._location: SqliteLocation = parse_sqlite_url(url)
        self._display = mask_password(url)
        self._migrations = migrations
        self._conn: aiosqlite.Connection | None = None
        self._lock = _free_lock()
        busy = self._location.busy_timeout_ms
        self._busy_timeout_ms = DEFAULT_BUSY_TIMEOUT_MS if busy is None else busy
        location = self._location
        if location.kind == "memory":
            self._where = f"in-memory SQLite database {self._display!r}"
        elif location.kind == "temporary":
            self._where = f"temporary SQLite database {self._display!r}"
        elif location.kind == "file" and location.path != url:
            self._where = f"SQLite database {location.path!r} (URL {self._display!r})"
        else:
            self._where = f"SQLite database {self._display!r}"

    @property
    def display_url(self) -> str:
        """The database URL (SQLite URLs carry no password; masked all the same)."""
        return self._display

    @property
    def location(self) -> SqliteLocation:
        """Where the URL points and the options it carries."""
        return self._location

    # -- errors ----------------------------------------------------------------

    def _translate(self, exc: sqlite3.Error | ValueError, doing: str) -> StorageError:
        """A driver error as the ``StorageError`` that names the problem and path."""
        code = getattr(exc, "sqlite_errorcode", None)
        prefix = f"{doing} {self._where} failed"
        reason = None if code is None else _UNAVAILABLE.get(code & 0xFF)
        if reason is not None:
            reason = reason.format(timeout=self._busy_timeout_ms)
            return StorageUnavailable(f"{prefix}: {reason} ({exc})", url=self._display)
        if code in _UNIQUE_CODES:
            return Conflict(f"{prefix}: {exc}", url=self._display)
        return StorageError(f"{prefix}: {exc}", url=self._display)

    def _require_open(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StorageError(f"{self._where} is not open", url=self._display)
        return self._conn

    # -- low-level calls ---------------------------------------------------------

    async def _fetch(
        self,
        conn: aiosqlite.Connection,
        name: str,
        params: _Params | None = None,
        *,
        doing: str,
    ) -> list[Any]:
        try:
            return list(await conn.execute_fetchall(_Q[name], params or {}))
        except (sqlite3.Error, ValueError) as exc:
            raise self._translate(exc, doing) from exc

    async def _run(self, conn: aiosqlite.Connection, sql: str, *, doing: str) -> None:
        try:
            await conn.execute(sql)
        except (sqlite3.Error, ValueError) as exc:
            raise self._translate(exc, doing) from exc

    async def _rollback(self, conn: aiosqlite.Connection) -> None:
        # Best effort: a failed COMMIT may already have ended the transaction,
        # and the error being raised is the one that matters.
        try:
            if conn.in_transaction:
                await conn.execute(_Q["rollback"])
        except (sqlite3.Error, ValueError):
            pass

    # -- open / close ----------------------------------------------------------

    async def open(self) -> None:
        """Connect, then create or verify the schema (SCHEMA.md section 4).

        Raises:
            StorageUnavailable: The file cannot be opened, is not a database, is
                locked past the busy timeout, or is read-only and has no schema.
            SchemaMismatch: A partial, foreign or newer layout (file untouched).
            MigrationFailed: Creating the schema or a ``cloaca_*`` step failed
                (rolled back).
        """
        async with self._lock:
            if self._conn is not None:
                return
            database, uri = self._location.connect_target()
            conn: aiosqlite.Connection = self._connect(
                database,
                uri=uri,
                isolation_level=None,
                timeout=self._busy_timeout_ms / 1000,
            )
            try:
                await conn
            except (sqlite3.Error, ValueError) as exc:
                # aiosqlite stops its worker thread after a failed connect without
                # waiting; wait for it, or it reports to a loop that may be gone.
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(conn._thread.join)
                raise self._translate(exc, "opening") from exc
            try:
                await self._prepare(conn)
            except BaseException:
                # Also on cancellation: the worker thread must not outlive us.
                with anyio.CancelScope(shield=True):
                    await self._close_quietly(conn)
                raise
            self._conn = conn

    async def _close_quietly(self, conn: aiosqlite.Connection) -> None:
        with contextlib.suppress(sqlite3.Error, ValueError):
            await conn.close()

    async def _read_state(self, conn: aiosqlite.Connection) -> SchemaState:
        rows = await self._fetch(conn, "list_tables", doing="reading the schema of")
        tables = frozenset(row[0] for row in rows)
        versions: frozenset[str] = frozenset()
        if MIGRATIONS_TABLE in tables:
            rows = await self._fetch(
                conn, "list_versions", doing="reading the migration records of"
            )
            versions = frozenset(row[0] for row in rows)
        return SchemaState(
            has_bookkeeping=MIGRATIONS_TABLE in tables, versions=versions, tables=tables
        )

    async def _prepare(self, conn: aiosqlite.Connection) -> None:
        migrations = self._migrations or load_migrations("sqlite")
        # Read first: nothing below writes until the layout is known to be ours.
        plan = plan_migrations(
            await self._read_state(conn), migrations, display_url=self._display
        )
        location = self._location
        if location.is_read_only and (plan.create or plan.pending):
            raise StorageUnavailable(
                f"opening {self._where} failed: the database is opened read-only "
                "(mode=ro) but needs its schema "
                + ("created" if plan.create else "migrated"),
                url=self._display,
            )
        if not location.is_read_only and not location.is_memory:
            if location.kind != "temporary":
                await self._ensure_journal_mode(conn, location.journal_mode or "WAL")
            await self._run(
                conn,
                _Q[f"set_synchronous_{(location.synchronous or 'NORMAL').lower()}"],
                doing="configuring",
            )
        if plan.create:
            pending = await self._create(conn, migrations)
        else:
            pending = plan.pending
        for migration in pending:
            await self._apply_migration(conn, migration)

    async def _ensure_journal_mode(self, conn: aiosqlite.Connection, mode: str) -> None:
        rows = await self._fetch(conn, "get_journal_mode", doing="configuring")
        if rows and str(rows[0][0]).upper() == mode:
            return
        statement = _Q[f"set_journal_mode_{mode.lower()}"]
        # Changing the journal mode needs the file to itself and SQLite does not
        # wait in the busy handler for it (it fails at once while another
        # connection writes), so wait here, bounded by the same busy timeout.
        deadline = anyio.current_time() + self._busy_timeout_ms / 1000
        delay = 0.001
        while True:
            try:
                await conn.execute(statement)
                return
            except sqlite3.OperationalError as exc:
                busy = exc.sqlite_errorcode & 0xFF in _BUSY_CODES
                if not busy or anyio.current_time() >= deadline:
                    raise self._translate(exc, "switching the journal mode of") from exc
            except (sqlite3.Error, ValueError) as exc:
                raise self._translate(exc, "switching the journal mode of") from exc
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def _create(
        self, conn: aiosqlite.Connection, migrations: MigrationSet
    ) -> tuple[Migration, ...]:
        """Create the layout in one transaction unless a concurrent opener did."""
        await self._run(conn, _Q["begin_write"], doing="creating the schema of")
        try:
            # Another store may have created it while we waited for the lock.
            plan = plan_migrations(
                await self._read_state(conn), migrations, display_url=self._display
            )
            if not plan.create:
                await self._run(conn, _Q["commit"], doing="opening")
                return plan.pending
            versions = list(migrations.baseline_versions)
            await self._execute_script(conn, migrations.baseline, "baseline.sql")
            for migration in migrations.additive:
                await self._execute_script(conn, migration.sql, migration.filename)
                versions.append(migration.version)
            await self._record_versions(conn, versions, "baseline.sql")
            await self._run(conn, _Q["commit"], doing="creating the schema of")
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._rollback(conn)
            raise
        return ()

    async def _apply_migration(
        self, conn: aiosqlite.Connection, migration: Migration
    ) -> None:
        """One ``cloaca_*`` file and its version row, in their own transaction."""
        await self._run(
            conn, _Q["begin_write"], doing=f"applying {migration.filename} to"
        )
        try:
            state = await self._read_state(conn)
            if migration.version not in state.versions:
                await self._execute_script(conn, migration.sql, migration.filename)
                await self._record_versions(
                    conn, [migration.version], migration.filename
                )
            await self._run(
                conn, _Q["commit"], doing=f"applying {migration.filename} to"
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._rollback(conn)
            raise

    async def _execute_script(
        self, conn: aiosqlite.Connection, script: str, source: str
    ) -> None:
        for statement in split_statements(script, source=source):
            try:
                await conn.execute(statement)
            except (sqlite3.Error, ValueError) as exc:
                cause = self._translate(exc, f"applying {source} to")
                if isinstance(cause, StorageUnavailable):
                    raise cause from exc
                raise MigrationFailed(
                    f"migration {source} failed on {self._where}: {exc}",
                    url=self._display,
                ) from exc

    async def _record_versions(
        self, conn: aiosqlite.Connection, versions: list[str], source: str
    ) -> None:
        try:
            await conn.executemany(
                _Q["record_version"], [{"version": v} for v in versions]
            )
        except (sqlite3.Error, ValueError) as exc:
            raise MigrationFailed(
                f"recording {source} in {MIGRATIONS_TABLE} of {self._where} "
                f"failed: {exc}",
                url=self._display,
            ) from exc

    async def close(self) -> None:
        """Close the connection (a private database is gone after it). Idempotent.

        Raises:
            StorageError: Closing failed (the store counts as closed anyway).
        """
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            with anyio.CancelScope(shield=True):
                try:
                    await conn.close()
                except (sqlite3.Error, ValueError) as exc:
                    raise self._translate(exc, "closing") from exc

    # -- writes ----------------------------------------------------------------

    async def apply(self, entries: Sequence[j.JournalEvent]) -> None:
        """Write ``entries`` in one ``BEGIN IMMEDIATE`` transaction (group commit).

        Entries on the same row take effect in batch order. The transaction runs
        shielded from cancellation, so when this returns or raises it has either
        committed or rolled back, never neither.

        Args:
            entries: Journal entries, in the order the runtime produced them.

        Raises:
            Conflict: A task was not ``Ready``/``NotStarted`` when ``TaskStarted``
                claimed it, or a unique constraint was violated.
            StorageUnavailable: The database is locked past the busy timeout or
                cannot be written.
            StorageError: Anything else, including entries naming rows that do
                not exist. Nothing of the batch is stored then.
        """
        if not entries:
            return
        contexts, groups = phase_batch(entries)
        async with self._lock:
            conn = self._require_open()
            with anyio.CancelScope(shield=True):
                try:
                    missed = await in_worker(conn, write_batch, contexts, groups)
                except (sqlite3.Error, ValueError) as exc:
                    raise self._translate(exc, "writing to") from exc
        if missed is not None:
            self._raise_missed(*missed)

    def _raise_missed(
        self, name: str, found: list[tuple[uuid.UUID, str | None]]
    ) -> None:
        """Raise for a statement group that changed fewer rows than it named."""
        refused = [
            f"{ident} ({status})"
            for ident, status in found
            if name == "start_task" and status not in (None, "Ready", "NotStarted")
        ]
        if refused:
            raise Conflict(
                f"writing to {self._where} failed: cannot start task executions that "
                f"are not Ready or NotStarted: {', '.join(refused)}; nothing of the "
                "batch was stored",
                url=self._display,
            )
        kind = "task execution" if name in TASK_UPDATES else "execution"
        missing = ", ".join(str(ident) for ident, status in found if status is None)
        raise StorageError(
            f"writing to {self._where} failed: {name} names unknown {kind} ids "
            f"{missing}; nothing of the batch was stored",
            url=self._display,
        )

    # -- reads -----------------------------------------------------------------

    async def _read(
        self, queries: Sequence[tuple[str, _Params]], doing: str
    ) -> list[list[Any]]:
        """Run several SELECTs in one read transaction (one snapshot)."""
        async with self._lock:
            conn = self._require_open()
            with anyio.CancelScope(shield=True):
                await self._run(conn, _Q["begin_read"], doing=doing)
                try:
                    results = [
                        await self._fetch(conn, name, params, doing=doing)
                        for name, params in queries
                    ]
                finally:
                    await self._rollback(conn)
        return results

    async def load_unfinished(self) -> list[ExecutionRow]:
        """Executions in ``Pending``/``Running`` with their tasks, oldest first.

        Raises:
            StorageError: The read failed.
        """
        executions, tasks = await self._read(
            [("list_unfinished_executions", {}), ("list_unfinished_tasks", {})],
            "reading unfinished executions from",
        )
        by_execution: dict[uuid.UUID, list[TaskRow]] = defaultdict(list)
        for row in tasks:
            task = task_row(row)
            by_execution[task.execution_id].append(task)
        return [
            execution_row(row, by_execution.get(decode_uuid(row[0]), ()))
            for row in executions
        ]

    async def get_execution(self, execution_id: uuid.UUID) -> ExecutionRow | None:
        """One execution with its tasks, or None.

        Raises:
            StorageError: The read failed.
        """
        params: _Params = {"id": execution_id.bytes}
        executions, tasks = await self._read(
            [("get_execution", params), ("get_execution_tasks", params)],
            "reading an execution from",
        )
        if not executions:
            return None
        return execution_row(executions[0], (task_row(row) for row in tasks))

    async def list_executions(
        self,
        *,
        pipeline_name: str | None = None,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[ExecutionRow]:
        """Executions newest first (by ``started_at``), without their tasks.

        Raises:
            ValueError: A negative ``limit`` or ``offset``.
            StorageError: The read failed.
        """
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        query: tuple[str, _Params] = (
            "list_executions",
            {
                "pipeline_name": pipeline_name,
                "status": status,
                "limit": limit,
                "offset": offset,
            },
        )
        (rows,) = await self._read([query], "listing executions of")
        return [execution_row(row) for row in rows]
