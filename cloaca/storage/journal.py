"""Journal entries: the write operations the Persistence actor hands to a store.

Each entry is one state change of SCHEMA.md section 5 (life of one execution, as rows).
A store writes a whole batch of entries in one transaction (group commit), in order,
so an entry may refer to rows created by an earlier entry of the same batch.

Times are timezone-aware UTC ``datetime`` values taken from the runtime's clock; the
store encodes them (SQLite: RFC 3339 text, PostgreSQL: naive UTC ``timestamp``).
Context values travel as compact JSON object text (non-ASCII unescaped), exactly what
goes into ``contexts.value``. Ids are ``uuid.UUID``.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

ALWAYS_TRIGGER_RULE = '{"type":"Always"}'
"""The trigger rule 0.3.1 writes for every Python task (SCHEMA.md 2.4)."""


class JournalEntry(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every journal entry."""


class NewTask(msgspec.Struct, frozen=True, kw_only=True):
    """One ``task_executions`` row created with its execution (``NotStarted``)."""

    id: uuid.UUID
    task_name: str
    max_attempts: int
    trigger_rules: str = ALWAYS_TRIGGER_RULE


class ExecutionCreated(
    JournalEntry, frozen=True, kw_only=True, tag="execution.created"
):
    """A new execution: input context row (if any), ``Pending`` execution, its tasks.

    ``context_id``/``context_json`` are both ``None`` for an empty input context
    (an empty map is never stored).
    """

    execution_id: uuid.UUID
    pipeline_name: str
    pipeline_version: str
    context_id: uuid.UUID | None
    context_json: str | None
    tasks: tuple[NewTask, ...]
    at: datetime


class ExecutionRunning(
    JournalEntry, frozen=True, kw_only=True, tag="execution.running"
):
    """The execution's first attempt started: ``Pending`` -> ``Running``."""

    execution_id: uuid.UUID
    at: datetime


class TaskReady(JournalEntry, frozen=True, kw_only=True, tag="task.ready"):
    """Dependencies terminal and trigger rule true: ``NotStarted`` -> ``Ready``."""

    task_execution_id: uuid.UUID
    at: datetime


class TaskStarted(JournalEntry, frozen=True, kw_only=True, tag="task.started"):
    """An attempt starts: ``Ready``/``NotStarted`` -> ``Running`` (``started_at``)."""

    task_execution_id: uuid.UUID
    attempt: int
    at: datetime


class TaskCompleted(JournalEntry, frozen=True, kw_only=True, tag="task.completed"):
    """Success: output context row (unless empty), metadata upsert, ``Completed``."""

    task_execution_id: uuid.UUID
    execution_id: uuid.UUID
    task_name: str
    context_id: uuid.UUID | None
    context_json: str | None
    at: datetime


class TaskRetryScheduled(
    JournalEntry, frozen=True, kw_only=True, tag="task.retry_scheduled"
):
    """A failed attempt that will be retried: back to ``Ready`` with ``attempt`` + 1.

    ``attempt`` is the number of the *next* attempt. ``started_at`` and
    ``completed_at`` become NULL, ``retry_at`` is set, ``last_error`` holds ``error``.
    """

    task_execution_id: uuid.UUID
    attempt: int
    retry_at: datetime
    error: str
    at: datetime


class TaskFailed(JournalEntry, frozen=True, kw_only=True, tag="task.failed"):
    """Final failure: ``Failed``, ``last_error``, ``error_details``."""

    task_execution_id: uuid.UUID
    error: str
    at: datetime


class TaskSkipped(JournalEntry, frozen=True, kw_only=True, tag="task.skipped"):
    """Trigger rule false: ``Skipped`` with ``error_details`` = ``reason``."""

    task_execution_id: uuid.UUID
    reason: str
    at: datetime


class TaskReset(JournalEntry, frozen=True, kw_only=True, tag="task.reset"):
    """Recovery of an orphaned ``Running`` task: back to ``Ready``.

    Sets ``started_at`` NULL, ``recovery_attempts`` = ``recovery_attempt``,
    ``last_recovery_at`` = ``at``, and inserts a ``task_reset`` recovery event whose
    details are ``{"task_name":…,"previous_status":"Running","new_status":"Ready",
    "recovery_attempt":n}``.
    """

    task_execution_id: uuid.UUID
    execution_id: uuid.UUID
    task_name: str
    recovery_attempt: int
    at: datetime


class TaskAbandoned(JournalEntry, frozen=True, kw_only=True, tag="task.abandoned"):
    """Recovery gave up on a task: ``Failed`` with ``error_details`` = ``error``.

    Also sets ``last_error``, ``completed_at``, and inserts a ``task_abandoned``
    recovery event (``recovery_type`` = ``kind``: ``task_abandoned`` or
    ``workflow_unavailable``).
    """

    task_execution_id: uuid.UUID
    execution_id: uuid.UUID
    task_name: str
    error: str
    at: datetime
    kind: str = "task_abandoned"


class ExecutionFinished(
    JournalEntry, frozen=True, kw_only=True, tag="execution.finished"
):
    """The execution reached a terminal state.

    ``status`` is ``Completed`` or ``Failed``. ``context_id`` moves the execution's
    context pointer to the final context (``None`` leaves it unchanged).
    ``error`` goes to ``error_details`` (``None`` leaves it NULL).
    """

    execution_id: uuid.UUID
    status: str
    context_id: uuid.UUID | None
    error: str | None
    at: datetime


JournalEvent = (
    ExecutionCreated
    | ExecutionRunning
    | TaskReady
    | TaskStarted
    | TaskCompleted
    | TaskRetryScheduled
    | TaskFailed
    | TaskSkipped
    | TaskReset
    | TaskAbandoned
    | ExecutionFinished
)
"""Every entry a store must be able to apply."""
