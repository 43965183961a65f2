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

Each statement is set-based: one array per column, one row per element
(``unnest``), so a group costs one round trip per table it writes. The contract is
strict, as on SQLite: an UPDATE returns the ids it touched, and an entry naming a
row that does not exist raises ``StorageError`` (naming the id), a start of a task
that is not ``Ready``/``NotStarted`` raises ``Conflict`` (naming the task and its
status), a duplicate id raises ``Conflict`` from the unique index, and a naive
``datetime`` raises ``StorageError`` before anything is written. The raise happens
inside the batch's transaction, so nothing of the batch is kept. Consequently
``apply`` is not idempotent: a batch that did commit fails with ``Conflict`` when
applied again.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Final, TypeVar

import asyncpg

from cloaca.storage.errors import Conflict, StorageError
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
        moment: An aware time (journal entries carry aware UTC times).

    Returns:
        The same instant as a naive UTC ``datetime`` (SCHEMA.md 2.2).

    Raises:
        StorageError: ``moment`` is naive: its zone is unknown, so storing it
            could shift it by hours.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise StorageError(
            f"refusing naive datetime {moment.isoformat()}: journal times must be "
            "timezone-aware"
        )
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


def _columns(rows: list[Row], width: int) -> list[list[object]]:
    """Rows to one list per column, the arrays the set-based statements take."""
    columns: list[list[object]] = [[] for _ in range(width)]
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


async def _insert(conn: asyncpg.Connection, name: str, rows: list[Row]) -> None:
    if rows:
        await conn.execute(
            load_queries("postgres")[name], *_columns(rows, len(rows[0]))
        )


async def _update(
    conn: asyncpg.Connection, name: str, rows: list[Row], *, table: str
) -> None:
    """Run a set-based UPDATE and report the ids (first column) it did not touch."""
    if not rows:
        return
    q = load_queries("postgres")
    touched = await conn.fetch(q[name], *_columns(rows, len(rows[0])))
    if len(touched) == len(rows):
        return
    wanted = [row[0] for row in rows]
    missing = set(wanted) - {r[0] for r in touched}
    statuses_query = q[
        "task_statuses" if table == "task_executions" else "execution_statuses"
    ]
    statuses = {r[0]: r[1] for r in await conn.fetch(statuses_query, list(missing))}
    absent = sorted(str(i) for i in missing if i not in statuses)
    if absent:
        raise StorageError(f"{table} has no row with id {', '.join(absent)}")
    # Only the conditional start skips existing rows (SCHEMA.md 5.4).
    refused = ", ".join(f"{i} is {statuses[i]}" for i in sorted(missing, key=str))
    raise Conflict(f"cannot start a task that is not Ready or NotStarted: {refused}")


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
    await _insert(conn, "insert_contexts", contexts)
    await _insert(conn, "insert_executions", executions)
    await _insert(conn, "insert_tasks", tasks)


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
    await _insert(conn, "insert_contexts", contexts)
    await _insert(conn, "upsert_task_metadata", metadata)
    await _update(conn, "complete_tasks", tasks, table="task_executions")


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
    await _update(conn, "reset_tasks", tasks, table="task_executions")
    await _insert(conn, "insert_recovery_events", events)


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
    await _update(conn, "abandon_tasks", tasks, table="task_executions")
    await _insert(conn, "insert_recovery_events", events)


async def _running(conn: asyncpg.Connection, group: list[JournalEvent]) -> None:
    rows: list[Row] = [
        (e.execution_id, naive_utc(e.at)) for e in _of(ExecutionRunning, group)
    ]
    await _update(conn, "mark_executions_running", rows, table="pipeline_executions")


async def _ready(conn: asyncpg.Connection, group: list[JournalEvent]) -> None:
    rows: list[Row] = [
        (e.task_execution_id, naive_utc(e.at)) for e in _of(TaskReady, group)
    ]
    await _update(conn, "mark_tasks_ready", rows, table="task_executions")


async def _started(conn: asyncpg.Connection, group: list[JournalEvent]) -> None:
    rows: list[Row] = [
        (e.task_execution_id, e.attempt, naive_utc(e.at))
        for e in _of(TaskStarted, group)
    ]
    await _update(conn, "start_tasks", rows, table="task_executions")


async def _retry(conn: asyncpg.Connection, group: list[JournalEvent]) -> None:
    rows: list[Row] = [
        (e.task_execution_id, e.attempt, naive_utc(e.retry_at), e.error,
         naive_utc(e.at))
        for e in _of(TaskRetryScheduled, group)
    ]  # fmt: skip
    await _update(conn, "schedule_task_retries", rows, table="task_executions")


async def _failed(conn: asyncpg.Connection, group: list[JournalEvent]) -> None:
    rows: list[Row] = [
        (e.task_execution_id, e.error, naive_utc(e.at)) for e in _of(TaskFailed, group)
    ]
    await _update(conn, "fail_tasks", rows, table="task_executions")


async def _skipped(conn: asyncpg.Connection, group: list[JournalEvent]) -> None:
    rows: list[Row] = [
        (e.task_execution_id, e.reason, naive_utc(e.at))
        for e in _of(TaskSkipped, group)
    ]
    await _update(conn, "skip_tasks", rows, table="task_executions")


async def _finished(conn: asyncpg.Connection, group: list[JournalEvent]) -> None:
    rows: list[Row] = [
        (e.execution_id, e.status, e.context_id, e.error, naive_utc(e.at))
        for e in _of(ExecutionFinished, group)
    ]
    await _update(conn, "finish_executions", rows, table="pipeline_executions")


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
