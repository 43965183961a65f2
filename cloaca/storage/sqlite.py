"""The SQLite store: ``SqliteStore``, one aiosqlite connection, Cloacina 0.3.1's layout.

Opening reads the file before it writes anything: a corrupted file, a locked one, a
missing directory or a layout it must refuse (SCHEMA.md 4) leaves the file exactly
as it was. Only then does the store switch the file to WAL (persistent, as 0.3.1
does; never switched back), set ``synchronous`` (NORMAL by default) and create the
schema under ``BEGIN IMMEDIATE``, re-checking inside the transaction so concurrent
creators create it once. Values follow SCHEMA.md 2.1: UUIDs as 16-byte blobs,
timestamps as ``dt.astimezone(timezone.utc).isoformat()`` text (read back with 0-9
fraction digits, truncated to microseconds), JSON as compact text.

``apply`` is the hot path. A batch becomes a short list of ``executemany`` calls:
each entry gets a *phase* one above the last earlier entry of the batch that touches
one of its rows (the execution row, task rows), so entries on the same row keep
their order while entries on different rows share a phase; each (phase, statement)
group is one call, and context inserts (immutable, new ids) go first in one call.
The whole transaction runs in aiosqlite's worker thread in one hop.
Every driver error leaves the store as a ``StorageError`` naming the database.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar, Final

import aiosqlite
import anyio
import msgspec

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
from cloaca.storage.sqlite_schedules import SqliteScheduleStore
from cloaca.storage.urls import SqliteLocation, mask_password, parse_sqlite_url

__all__ = (
    "DEFAULT_BUSY_TIMEOUT_MS",
    "SqliteStore",
    "decode_timestamp",
    "encode_timestamp",
    "split_statements",
)

DEFAULT_BUSY_TIMEOUT_MS: Final = 30_000
"""0.3.1's busy timeout (SCHEMA.md 2.1); ``_busy_timeout`` in the URL overrides it."""

_Q: Final = load_queries("sqlite")
_UTC: Final = UTC

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
_TIMESTAMP: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
    r"(Z|[+-]\d{2}:?\d{2})?\Z"
)
_Params = dict[str, object]

# Statement order inside one phase. Rows of one phase are disjoint, so any fixed
# order is correct; this one reads like an execution's life.
_ORDER: Final = (
    "insert_execution",
    "insert_task",
    "mark_execution_running",
    "mark_task_ready",
    "start_task",
    "upsert_task_metadata",
    "complete_task",
    "schedule_task_retry",
    "fail_task",
    "skip_task",
    "reset_task",
    "abandon_task",
    "insert_recovery_event",
    "finish_execution",
)
_RANK: Final = {name: rank for rank, name in enumerate(_ORDER)}
_TASK_UPDATES: Final = frozenset(
    {
        "mark_task_ready",
        "start_task",
        "complete_task",
        "schedule_task_retry",
        "fail_task",
        "skip_task",
        "reset_task",
        "abandon_task",
    }
)
_EXECUTION_UPDATES: Final = frozenset({"mark_execution_running", "finish_execution"})
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


def encode_timestamp(value: datetime) -> str:
    """SCHEMA.md 2.1 text: UTC RFC 3339 with ``+00:00``, no forced fraction.

    Args:
        value: A timezone-aware time.

    Returns:
        For example ``2026-12-04T14:00:00+00:00`` or ``…:32.785487+00:00``.

    Raises:
        StorageError: ``value`` is naive (its zone would be a guess).
    """
    if value.tzinfo is None:
        raise StorageError(f"refusing to store naive datetime {value.isoformat()}")
    return value.astimezone(_UTC).isoformat()


def decode_timestamp(text: str) -> datetime:
    """Read a stored timestamp as an aware UTC ``datetime``.

    Args:
        text: RFC 3339 text with 0-9 fraction digits (0.3.1 writes 9); a missing
            offset (Diesel's ``run_on``) is read as UTC.

    Returns:
        The time, truncated (never rounded) to microseconds.

    Raises:
        StorageError: The text is not a timestamp.
    """
    match = _TIMESTAMP.match(text)
    if match is None:
        raise StorageError(f"unreadable timestamp {text!r} in the database")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micro = int((fraction or "")[:6].ljust(6, "0"))
    zone = _UTC
    if offset not in (None, "Z", "+00:00"):
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        zone = timezone(
            sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        )
    moment = datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), micro
    )
    return moment.replace(tzinfo=zone).astimezone(_UTC)


def _decode_optional_timestamp(text: str | None) -> datetime | None:
    return None if text is None else decode_timestamp(text)


def _decode_uuid(value: bytes | str) -> uuid.UUID:
    if isinstance(value, bytes) and len(value) == 16:
        return uuid.UUID(bytes=value)
    # Not 0.3.1's encoding, but an id written as text is still an id.
    return uuid.UUID(value.decode() if isinstance(value, bytes) else value)


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


def _phase_batch(
    entries: Sequence[j.JournalEvent],
) -> tuple[list[_Params], list[tuple[str, list[_Params]]]]:
    """Turn a batch into context inserts plus ``(statement, rows)`` groups in order.

    Returns:
        The rows of ``insert_context`` (run first), then one group per (phase,
        statement), sorted by phase then by ``_ORDER``.
    """
    contexts: list[_Params] = []
    groups: dict[tuple[int, int], list[_Params]] = {}
    # Row keys are the ids' integers: a task row's is its id, an execution
    # row's its bitwise complement (negative), so the two never collide.
    last_phase: dict[int, int] = {}
    # Entries of one transition share their time: encode each time once.
    stamps: dict[datetime, str] = {}
    rank = _RANK
    for entry in entries:
        moment = entry.at
        at = stamps.get(moment)
        if at is None:
            at = stamps[moment] = encode_timestamp(moment)
        keys, statements = _statements(entry, contexts, at)
        phase = 0
        for key in keys:
            seen = last_phase.get(key)
            if seen is not None and seen >= phase:
                phase = seen + 1
        for key in keys:
            last_phase[key] = phase
        for name, params in statements:
            group = (phase, rank[name])
            rows = groups.get(group)
            if rows is None:
                groups[group] = [params]
            else:
                rows.append(params)
    ordered = [(_ORDER[rank], rows) for (_, rank), rows in sorted(groups.items())]
    return contexts, ordered


_ID_POOL: Final = 256
_random_id_pool: list[bytes] = []
# A forked child must not hand out the ids its parent also holds.
os.register_at_fork(after_in_child=_random_id_pool.clear)


def _random_id_bytes() -> bytes:
    """The 16 bytes of a random (version 4) UUID, from ``os.urandom`` in bulk."""
    pool = _random_id_pool
    if not pool:
        data = bytearray(os.urandom(16 * _ID_POOL))
        for i in range(0, len(data), 16):
            data[i + 6] = (data[i + 6] & 0x0F) | 0x40
            data[i + 8] = (data[i + 8] & 0x3F) | 0x80
        pool.extend(bytes(data[i : i + 16]) for i in range(0, len(data), 16))
    return pool.pop()


def _blob(value: uuid.UUID | None) -> bytes | None:
    return None if value is None else value.bytes


def _row(name: str, **params: object) -> tuple[str, _Params]:
    return name, params


_Statements = tuple[list[int], list[tuple[str, _Params]]]


def _statements(entry: j.JournalEvent, contexts: list[_Params], at: str) -> _Statements:
    """The rows an entry touches and the statements that write it (SCHEMA.md 5).

    ``at`` is the entry's time, encoded. Dispatch is on the exact entry type
    (journal entries are final classes): one dict lookup instead of a chain of
    pattern matches per entry.
    """
    return _BUILDERS[type(entry)](entry, contexts, at)


def _execution_created(
    entry: j.ExecutionCreated, contexts: list[_Params], at: str
) -> _Statements:
    context_id = entry.context_id
    if context_id is not None and entry.context_json is not None:
        contexts.append({"id": context_id.bytes, "value": entry.context_json, "at": at})
    eid = entry.execution_id.bytes
    keys = [~entry.execution_id.int]
    statements: list[tuple[str, _Params]] = [
        (
            "insert_execution",
            {
                "id": eid,
                "pipeline_name": entry.pipeline_name,
                "pipeline_version": entry.pipeline_version,
                "context_id": _blob(context_id),
                "at": at,
            },
        )
    ]
    for task in entry.tasks:
        keys.append(task.id.int)
        statements.append(
            (
                "insert_task",
                {
                    "id": task.id.bytes,
                    "execution_id": eid,
                    "task_name": task.task_name,
                    "max_attempts": task.max_attempts,
                    "trigger_rules": task.trigger_rules,
                    "at": at,
                },
            )
        )
    return keys, statements


def _execution_running(
    entry: j.ExecutionRunning, contexts: list[_Params], at: str
) -> _Statements:
    params: _Params = {"id": entry.execution_id.bytes, "at": at}
    return [~entry.execution_id.int], [("mark_execution_running", params)]


def _execution_finished(
    entry: j.ExecutionFinished, contexts: list[_Params], at: str
) -> _Statements:
    params: _Params = {
        "id": entry.execution_id.bytes,
        "status": entry.status,
        "context_id": _blob(entry.context_id),
        "error": entry.error,
        "at": at,
    }
    return [~entry.execution_id.int], [("finish_execution", params)]


def _task_ready(entry: j.TaskReady, contexts: list[_Params], at: str) -> _Statements:
    task = entry.task_execution_id
    return [task.int], [("mark_task_ready", {"id": task.bytes, "at": at})]


def _task_started(
    entry: j.TaskStarted, contexts: list[_Params], at: str
) -> _Statements:
    task = entry.task_execution_id
    params: _Params = {"id": task.bytes, "attempt": entry.attempt, "at": at}
    return [task.int], [("start_task", params)]


def _task_completed(
    entry: j.TaskCompleted, contexts: list[_Params], at: str
) -> _Statements:
    context_id = entry.context_id
    if context_id is not None and entry.context_json is not None:
        contexts.append({"id": context_id.bytes, "value": entry.context_json, "at": at})
    task = entry.task_execution_id
    tid = task.bytes
    metadata: _Params = {
        "id": _random_id_bytes(),
        "task_execution_id": tid,
        "execution_id": entry.execution_id.bytes,
        "task_name": entry.task_name,
        "context_id": _blob(context_id),
        "at": at,
    }
    complete: _Params = {"id": tid, "at": at}
    return [task.int], [("upsert_task_metadata", metadata), ("complete_task", complete)]


def _task_retry_scheduled(
    entry: j.TaskRetryScheduled, contexts: list[_Params], at: str
) -> _Statements:
    task = entry.task_execution_id
    params: _Params = {
        "id": task.bytes,
        "attempt": entry.attempt,
        "retry_at": encode_timestamp(entry.retry_at),
        "error": entry.error,
        "at": at,
    }
    return [task.int], [("schedule_task_retry", params)]


def _task_failed(entry: j.TaskFailed, contexts: list[_Params], at: str) -> _Statements:
    task = entry.task_execution_id
    params: _Params = {"id": task.bytes, "error": entry.error, "at": at}
    return [task.int], [("fail_task", params)]


def _task_skipped(
    entry: j.TaskSkipped, contexts: list[_Params], at: str
) -> _Statements:
    task = entry.task_execution_id
    params: _Params = {"id": task.bytes, "reason": entry.reason, "at": at}
    return [task.int], [("skip_task", params)]


def _task_reset(entry: j.TaskReset, contexts: list[_Params], at: str) -> _Statements:
    task = entry.task_execution_id
    tid = task.bytes
    n = entry.recovery_attempt
    reset: _Params = {"id": tid, "recovery_attempt": n, "at": at}
    details: dict[str, object] = {
        "task_name": entry.task_name,
        "previous_status": "Running",
        "new_status": "Ready",
        "recovery_attempt": n,
    }
    event = _recovery_event(entry.execution_id, tid, "task_reset", details, at)
    return [task.int], [("reset_task", reset), event]


def _task_abandoned(
    entry: j.TaskAbandoned, contexts: list[_Params], at: str
) -> _Statements:
    task = entry.task_execution_id
    tid = task.bytes
    abandon: _Params = {"id": tid, "error": entry.error, "at": at}
    details: dict[str, object] = {"task_name": entry.task_name, "reason": entry.error}
    event = _recovery_event(entry.execution_id, tid, entry.kind, details, at)
    return [task.int], [("abandon_task", abandon), event]


_BUILDERS: Final[dict[type[Any], Callable[[Any, list[_Params], str], _Statements]]] = {
    j.ExecutionCreated: _execution_created,
    j.ExecutionRunning: _execution_running,
    j.ExecutionFinished: _execution_finished,
    j.TaskReady: _task_ready,
    j.TaskStarted: _task_started,
    j.TaskCompleted: _task_completed,
    j.TaskRetryScheduled: _task_retry_scheduled,
    j.TaskFailed: _task_failed,
    j.TaskSkipped: _task_skipped,
    j.TaskReset: _task_reset,
    j.TaskAbandoned: _task_abandoned,
}


def _recovery_event(
    execution_id: uuid.UUID,
    task_id: bytes,
    kind: str,
    details: dict[str, object],
    at: str,
) -> tuple[str, _Params]:
    return _row(
        "insert_recovery_event",
        id=uuid.uuid4().bytes,
        execution_id=execution_id.bytes,
        task_execution_id=task_id,
        recovery_type=kind,
        # Compact, non-ASCII unescaped: SCHEMA.md 2.1's JSON text.
        details=msgspec.json.encode(details).decode(),
        at=at,
    )


def _task_row(row: Sequence[Any]) -> TaskRow:
    return TaskRow(
        id=_decode_uuid(row[0]),
        execution_id=_decode_uuid(row[1]),
        task_name=row[2],
        status=row[3],
        # NULL only in foreign rows: read the column defaults (SCHEMA.md 3).
        attempt=1 if row[4] is None else row[4],
        max_attempts=1 if row[5] is None else row[5],
        started_at=_decode_optional_timestamp(row[6]),
        completed_at=_decode_optional_timestamp(row[7]),
        retry_at=_decode_optional_timestamp(row[8]),
        error_details=row[9],
        last_error=row[10],
        recovery_attempts=row[11],
        trigger_rules=row[12],
        output_context_json=row[13],
        created_at=decode_timestamp(row[14]),
        updated_at=decode_timestamp(row[15]),
    )


def _execution_row(row: Sequence[Any], tasks: Iterable[TaskRow] = ()) -> ExecutionRow:
    return ExecutionRow(
        id=_decode_uuid(row[0]),
        pipeline_name=row[1],
        pipeline_version=row[2],
        status=row[3],
        context_json=row[4],
        started_at=decode_timestamp(row[5]),
        completed_at=_decode_optional_timestamp(row[6]),
        error_details=row[7],
        recovery_attempts=row[8],
        created_at=decode_timestamp(row[9]),
        updated_at=decode_timestamp(row[10]),
        tasks=tuple(tasks),
    )


_Missed = tuple[str, list[tuple[uuid.UUID, str | None]]]


def _write_batch(
    db: sqlite3.Connection,
    contexts: list[_Params],
    groups: list[tuple[str, list[_Params]]],
) -> _Missed | None:
    """The whole write transaction, run in the connection's worker thread.

    One hop to the worker thread per batch instead of one per statement: the
    hops, not SQLite, were most of a small batch's cost.

    Returns:
        None once committed; otherwise, after rolling back, the statement whose
        rows did not all change and the current status of each row it named
        (None for a row that does not exist).
    """
    db.execute(_Q["begin_write"])
    try:
        if contexts:
            db.executemany(_Q["insert_context"], contexts)
        for name, rows in groups:
            changed = db.executemany(_Q[name], rows).rowcount
            if changed != len(rows) and (
                name in _TASK_UPDATES or name in _EXECUTION_UPDATES
            ):
                lookup = _Q[
                    "get_task_status"
                    if name in _TASK_UPDATES
                    else "get_execution_status"
                ]
                found: list[tuple[uuid.UUID, str | None]] = []
                for params in rows:
                    row = db.execute(lookup, {"id": params["id"]}).fetchone()
                    ident = uuid.UUID(bytes=params["id"])  # type: ignore[arg-type]
                    found.append((ident, None if row is None else row[0]))
                db.execute(_Q["rollback"])
                return name, found
        db.execute(_Q["commit"])
    except BaseException:
        # Keep the original error: a failed rollback must not replace it.
        with contextlib.suppress(sqlite3.Error):
            if db.in_transaction:
                db.execute(_Q["rollback"])
        raise
    return None


async def _in_worker(
    conn: aiosqlite.Connection,
    fn: Callable[..., _Missed | None],
    *args: object,
) -> _Missed | None:
    # aiosqlite's own dispatch to its worker thread (private, present in every
    # aiosqlite release): the function runs there with the sqlite3 connection.
    result: _Missed | None = await conn._execute(fn, conn._conn, *args)  # type: ignore[no-untyped-call]
    return result


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
        contexts, groups = _phase_batch(entries)
        async with self._lock:
            conn = self._require_open()
            with anyio.CancelScope(shield=True):
                try:
                    missed = await _in_worker(conn, _write_batch, contexts, groups)
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
        kind = "task execution" if name in _TASK_UPDATES else "execution"
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
            task = _task_row(row)
            by_execution[task.execution_id].append(task)
        return [
            _execution_row(row, by_execution.get(_decode_uuid(row[0]), ()))
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
        return _execution_row(executions[0], (_task_row(row) for row in tasks))

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
        query = _row(
            "list_executions",
            pipeline_name=pipeline_name,
            status=status,
            limit=limit,
            offset=offset,
        )
        (rows,) = await self._read([query], "listing executions of")
        return [_execution_row(row) for row in rows]
