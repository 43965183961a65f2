"""Turning a batch of journal entries into SQLite statements, and writing it.

``SqliteStore.apply`` is the hot path, so a batch becomes a short list of
``executemany`` calls instead of a statement per entry (``phase_batch``): each
entry gets a *phase* one above the last earlier entry of the batch that touches
one of its rows (the execution row, task rows), so entries on the same row keep
their order while entries on different rows share a phase; each (phase,
statement) group is one call, and context inserts (immutable, new ids) go first
in one call. The whole ``BEGIN IMMEDIATE`` transaction runs in aiosqlite's
worker thread in one hop (``write_batch``). A group that changed fewer rows than
it named rolls the batch back and reports the status of each row it named; the
store turns that into ``Conflict`` or ``StorageError``, since only it can name
the database. The statements themselves are ``queries.sql``'s (SCHEMA.md 5).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import msgspec

from cloaca.storage import journal as j
from cloaca.storage.queries import load_queries
from cloaca.storage.sqlite_codec import encode_timestamp

if TYPE_CHECKING:
    import aiosqlite

__all__ = ("TASK_UPDATES", "in_worker", "phase_batch", "write_batch")

_Q: Final = load_queries("sqlite")
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
TASK_UPDATES: Final = frozenset(
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


def phase_batch(
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


_Missed = tuple[str, list[tuple[uuid.UUID, str | None]]]


def write_batch(
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
                name in TASK_UPDATES or name in _EXECUTION_UPDATES
            ):
                lookup = _Q[
                    "get_task_status"
                    if name in TASK_UPDATES
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


async def in_worker(
    conn: aiosqlite.Connection,
    fn: Callable[..., _Missed | None],
    *args: object,
) -> _Missed | None:
    """Run ``fn(db, *args)`` in ``conn``'s worker thread with its sqlite3 connection.

    It uses aiosqlite's own dispatch (private, present in every aiosqlite
    release): the public calls would cost a hop per statement.
    """
    result: _Missed | None = await conn._execute(fn, conn._conn, *args)  # type: ignore[no-untyped-call]
    return result
