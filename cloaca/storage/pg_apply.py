"""Writing one batch of journal entries to PostgreSQL in few round trips.

A batch is applied in one transaction, but not one statement per entry: entries
about different executions commute, so they are grouped and each group is one
``executemany`` (asyncpg pipelines its rows into a single round trip). Entries about
the same execution must keep their order (a task may be started, retried, started
again and completed in one batch), so each entry gets a *phase*: its index among
the batch's entries of the same execution. Entries are stable-sorted by (phase,
kind) and every (phase, kind) run becomes one group; a group therefore holds at
most one entry per execution, and phase ``n`` of an execution runs after its phase
``n - 1``.

Task entries without an ``execution_id`` (``TaskReady``, ``TaskStarted``, ...) are
keyed by the execution that another entry of the same batch ties them to
(``ExecutionCreated``'s tasks, ``TaskCompleted``, ``TaskReset``, ``TaskAbandoned``),
or else by their own task id. That is enough for correctness: the only writes that
depend on rows written by another entry are the task rows of an
``ExecutionCreated`` and the final context of an ``ExecutionFinished``, and both
are always tied to the execution.

Every write is idempotent (inserts of client ids do nothing on conflict, updates
set absolute values, recovery events are inserted once), so a batch whose commit
was cut off may be applied again.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Final, TypeVar

import asyncpg

from cloaca.storage.journal import (
    ExecutionCreated,
    ExecutionFinished,
    ExecutionRunning,
    JournalEvent,
    TaskAbandoned,
    TaskCompleted,
    TaskFailed,
    TaskReady,
    TaskReset,
    TaskRetryScheduled,
    TaskSkipped,
    TaskStarted,
)
from cloaca.storage.queries import load_queries

__all__ = ("apply_batch", "naive_utc", "plan_batch")

Row = tuple[object, ...]
_E = TypeVar("_E")

# Creation first: within a phase the order of kinds does not matter for
# correctness (see the module docstring), but a fixed order keeps plans stable.
_KIND_ORDER: Final[dict[type, int]] = {
    kind: rank
    for rank, kind in enumerate(
        (
            ExecutionCreated,
            ExecutionRunning,
            TaskReady,
            TaskStarted,
            TaskCompleted,
            TaskRetryScheduled,
            TaskFailed,
            TaskSkipped,
            TaskReset,
            TaskAbandoned,
            ExecutionFinished,
        )
    )
}


def naive_utc(moment: datetime) -> datetime:
    """A ``timestamp without time zone`` value holding UTC wall-clock time.

    Args:
        moment: An aware time (naive values are taken to be UTC already).

    Returns:
        The same instant as a naive UTC ``datetime`` (SCHEMA.md 2.2).
    """
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _json(value: dict[str, object]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def plan_batch(entries: Sequence[JournalEvent]) -> list[list[JournalEvent]]:
    """Group a batch into runs of one kind that may be written together.

    Args:
        entries: The batch, in the order the runtime produced it.

    Returns:
        Groups in execution order; each holds entries of one kind, at most one
        per execution, in their original relative order.
    """
    owner: dict[uuid.UUID, uuid.UUID] = {}
    for entry in entries:
        match entry:
            case ExecutionCreated():
                for task in entry.tasks:
                    owner[task.id] = entry.execution_id
            case TaskCompleted() | TaskReset() | TaskAbandoned():
                owner[entry.task_execution_id] = entry.execution_id
            case _:
                pass
    seen: dict[uuid.UUID, int] = {}
    keyed: list[tuple[int, int, int, JournalEvent]] = []
    for index, entry in enumerate(entries):
        if isinstance(entry, ExecutionCreated | ExecutionRunning | ExecutionFinished):
            key = entry.execution_id
        else:
            key = owner.get(entry.task_execution_id, entry.task_execution_id)
        phase = seen.get(key, 0)
        seen[key] = phase + 1
        keyed.append((phase, _KIND_ORDER[type(entry)], index, entry))
    keyed.sort(key=lambda item: item[:3])
    return [
        [item[3] for item in run]
        for _, run in itertools.groupby(keyed, key=lambda item: item[:2])
    ]


async def _many(conn: asyncpg.Connection, name: str, rows: list[Row]) -> None:
    if rows:
        await conn.executemany(load_queries("postgres")[name], rows)


def _of(kind: type[_E], group: list[JournalEvent]) -> list[_E]:
    """The group's entries as ``kind`` (plan_batch puts one kind in a group)."""
    typed: list[_E] = []
    for entry in group:
        assert isinstance(entry, kind)
        typed.append(entry)
    return typed


async def _created(conn: asyncpg.Connection, group: list[JournalEvent]) -> None:
    contexts: list[Row] = []
    executions: list[Row] = []
    tasks: list[Row] = []
    for e in _of(ExecutionCreated, group):
        at = naive_utc(e.at)
        if e.context_id is not None:
            contexts.append((e.context_id, e.context_json, at))
        executions.append(
            (e.execution_id, e.pipeline_name, e.pipeline_version, e.context_id, at)
        )
        tasks.extend(
            (t.id, e.execution_id, t.task_name, t.max_attempts, t.trigger_rules, at)
            for t in e.tasks
        )
    # Foreign keys dictate the order: contexts, executions, then their tasks.
    await _many(conn, "insert_context", contexts)
    await _many(conn, "insert_execution", executions)
    await _many(conn, "insert_task", tasks)


async def _completed(conn: asyncpg.Connection, group: list[JournalEvent]) -> None:
    contexts: list[Row] = []
    metadata: list[Row] = []
    tasks: list[Row] = []
    for e in _of(TaskCompleted, group):
        at = naive_utc(e.at)
        if e.context_id is not None:
            contexts.append((e.context_id, e.context_json, at))
        metadata.append(
            (uuid.uuid4(), e.task_execution_id, e.execution_id, e.task_name,
             e.context_id, at)
        )  # fmt: skip
        tasks.append((e.task_execution_id, at))
    await _many(conn, "insert_context", contexts)
    await _many(conn, "upsert_task_metadata", metadata)
    await _many(conn, "mark_task_completed", tasks)


async def _reset(conn: asyncpg.Connection, group: list[JournalEvent]) -> None:
    tasks: list[Row] = []
    events: list[Row] = []
    for e in _of(TaskReset, group):
        at = naive_utc(e.at)
        tasks.append((e.task_execution_id, e.recovery_attempt, at))
        details = _json(
            {
                "task_name": e.task_name,
                "previous_status": "Running",
                "new_status": "Ready",
                "recovery_attempt": e.recovery_attempt,
            }
        )
        events.append(
            (uuid.uuid4(), e.execution_id, e.task_execution_id, "task_reset", at,
             details)
        )  # fmt: skip
    await _many(conn, "reset_task", tasks)
    await _many(conn, "insert_recovery_event", events)


async def _abandoned(conn: asyncpg.Connection, group: list[JournalEvent]) -> None:
    tasks: list[Row] = []
    events: list[Row] = []
    for e in _of(TaskAbandoned, group):
        at = naive_utc(e.at)
        tasks.append((e.task_execution_id, e.error, at))
        details = _json(
            {
                "task_name": e.task_name,
                "previous_status": "Running",
                "new_status": "Failed",
                "error": e.error,
            }
        )
        events.append(
            (uuid.uuid4(), e.execution_id, e.task_execution_id, e.kind, at, details)
        )
    await _many(conn, "abandon_task", tasks)
    await _many(conn, "insert_recovery_event", events)


async def _running(conn: asyncpg.Connection, group: list[JournalEvent]) -> None:
    rows: list[Row] = [
        (e.execution_id, naive_utc(e.at)) for e in _of(ExecutionRunning, group)
    ]
    await _many(conn, "mark_execution_running", rows)


async def _ready(conn: asyncpg.Connection, group: list[JournalEvent]) -> None:
    rows: list[Row] = [
        (e.task_execution_id, naive_utc(e.at)) for e in _of(TaskReady, group)
    ]
    await _many(conn, "mark_task_ready", rows)


async def _started(conn: asyncpg.Connection, group: list[JournalEvent]) -> None:
    rows: list[Row] = [
        (e.task_execution_id, e.attempt, naive_utc(e.at))
        for e in _of(TaskStarted, group)
    ]
    await _many(conn, "mark_task_started", rows)


async def _retry(conn: asyncpg.Connection, group: list[JournalEvent]) -> None:
    rows: list[Row] = [
        (e.task_execution_id, e.attempt, naive_utc(e.retry_at), e.error,
         naive_utc(e.at))
        for e in _of(TaskRetryScheduled, group)
    ]  # fmt: skip
    await _many(conn, "schedule_task_retry", rows)


async def _failed(conn: asyncpg.Connection, group: list[JournalEvent]) -> None:
    rows: list[Row] = [
        (e.task_execution_id, e.error, naive_utc(e.at)) for e in _of(TaskFailed, group)
    ]
    await _many(conn, "mark_task_failed", rows)


async def _skipped(conn: asyncpg.Connection, group: list[JournalEvent]) -> None:
    rows: list[Row] = [
        (e.task_execution_id, e.reason, naive_utc(e.at))
        for e in _of(TaskSkipped, group)
    ]
    await _many(conn, "mark_task_skipped", rows)


async def _finished(conn: asyncpg.Connection, group: list[JournalEvent]) -> None:
    rows: list[Row] = [
        (e.execution_id, e.status, e.context_id, e.error, naive_utc(e.at))
        for e in _of(ExecutionFinished, group)
    ]
    await _many(conn, "finish_execution", rows)


_Writer = Callable[[asyncpg.Connection, list[JournalEvent]], Awaitable[None]]

_WRITERS: Final[dict[type, _Writer]] = {
    ExecutionCreated: _created,
    ExecutionRunning: _running,
    TaskReady: _ready,
    TaskStarted: _started,
    TaskCompleted: _completed,
    TaskRetryScheduled: _retry,
    TaskFailed: _failed,
    TaskSkipped: _skipped,
    TaskReset: _reset,
    TaskAbandoned: _abandoned,
    ExecutionFinished: _finished,
}


async def apply_batch(conn: asyncpg.Connection, entries: Sequence[JournalEvent]) -> int:
    """Write ``entries`` on ``conn``, which must be inside a transaction.

    Args:
        conn: The connection, in the batch's transaction.
        entries: The batch, in order.

    Returns:
        The number of groups written (each costs one to three round trips).
    """
    groups = plan_batch(entries)
    for group in groups:
        await _WRITERS[type(group[0])](conn, group)
    return len(groups)
