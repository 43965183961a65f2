"""Every message the runtime's actors exchange (frozen msgspec Structs; no logic).

Journal entries (the only messages that reach the database) live in
``cloaca.storage.journal``; here are the commands and events between actors.
Contexts travel as compact JSON object text, so no actor shares a mutable dict.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from cloaca.storage.journal import JournalEvent
from cloaca.storage.protocol import ExecutionRow


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """Base of the runtime's actor messages."""


class TaskRef(msgspec.Struct, frozen=True, kw_only=True):
    """One task of one execution, and the attempt a message is about."""

    execution_id: uuid.UUID
    task_name: str
    row_id: uuid.UUID
    attempt: int
    generation: int = 1
    """The scheduler incarnation that dispatched it; a restarted scheduler drops
    messages about attempts of an earlier incarnation (they were cancelled)."""


# -- to the Scheduler ------------------------------------------------------------


class StartExecution(Message, frozen=True):
    """Begin a new execution of ``workflow_name`` with ``context_json`` as input."""

    execution_id: uuid.UUID
    workflow_name: str
    context_json: str
    origin: str | None = None
    """Who started it: ``None`` for ``execute()``, else e.g. ``cron:<schedule id>``."""


class ResumeExecutions(Message, frozen=True):
    """Continue executions read back from the database (recovery, restarts)."""

    rows: tuple[ExecutionRow, ...]


class AttemptStarting(Message, frozen=True):
    """A restarted task actor wants to run a retry (``task.attempt``).

    The scheduler journals the start, and once it is durable answers
    ``reply_to`` with ``RunAttempt`` (or ``AbandonAttempt``).
    """

    task: TaskRef
    reply_to: Any


class AttemptSucceeded(Message, frozen=True):
    """The attempt returned a valid context (``output_json``)."""

    task: TaskRef
    output_json: str
    at: datetime


class AttemptFailed(Message, frozen=True):
    """The attempt failed; ``retry_at`` is set when it will be retried."""

    task: TaskRef
    error: str
    retry_at: datetime | None
    at: datetime


class Committed(Message, frozen=True):
    """Persistence made every journal entry up to ``seq`` durable."""

    seq: int
    generation: int = 1


class LeasesLost(Message, frozen=True):
    """Another runner took these executions over: stop driving them at once.

    Nothing more of them is journaled by this runner (the store refuses it), their
    attempts in flight are abandoned and their callers are told they were lost.
    """

    execution_ids: frozenset[uuid.UUID]


class StopIntake(Message, frozen=True):
    """Stop dispatching new attempts (``DefaultRunner.stop()``)."""


class ResumeIntake(Message, frozen=True):
    """Dispatch again (``DefaultRunner.start()``)."""


class RebuildOwned(Message, frozen=True):
    """A restarted scheduler reloads the executions its predecessor drove.

    Sent to itself from ``on_start`` rather than done there: a start waits for
    the supervisor, and the rebuild asks Persistence, which that supervisor may
    have to restart meanwhile (found by the deterministic simulation).
    """


SchedulerMsg = (
    RebuildOwned
    | StartExecution
    | ResumeExecutions
    | AttemptStarting
    | AttemptSucceeded
    | AttemptFailed
    | Committed
    | LeasesLost
    | StopIntake
    | ResumeIntake
)


# -- to the Executor -------------------------------------------------------------


class DispatchTask(Message, frozen=True):
    """Run one attempt of a task with ``input_json`` as its input context.

    Its start is already durable. ``not_before`` delays a retry that was
    waiting out its backoff when its execution was read back.
    """

    task: TaskRef
    input_json: str
    max_attempts: int
    not_before: datetime | None = None


class RunAttempt(Message, frozen=True):
    """To a task actor: its start is durable, run the attempt."""


class AbandonAttempt(Message, frozen=True):
    """To a task actor: the attempt is no longer wanted; stop without running."""


RUN_ATTEMPT = RunAttempt()


ExecutorMsg = DispatchTask


# -- to Persistence --------------------------------------------------------------


class Append(Message, frozen=True):
    """Journal ``entries``; answered by ``Committed(seq)`` to the scheduler."""

    entries: tuple[JournalEvent, ...]
    seq: int
    generation: int = 1
    """The scheduler incarnation that wrote it (see ``SchedulerGeneration``)."""
    execution_id: uuid.UUID | None = None
    """The execution every entry is about, so that a batch refused for a lost
    lease can be written again without that execution's entries."""


class Flush(Message, frozen=True):
    """Commit everything appended so far (sent by Persistence to itself)."""


class LoadExecutions(Message, frozen=True):
    """Read executions back: the unfinished ones, or those with the given ids."""

    ids: tuple[uuid.UUID, ...] | None = None


PersistenceMsg = Append | Flush | LoadExecutions


class SchedulerGeneration:
    """The current scheduler incarnation, shared by the scheduler and Persistence.

    Mailboxes outlive restarts, so after a scheduler restart Persistence may
    still hold appends of the scheduler that crashed; those describe state the
    new scheduler rebuilt from the database, and applying them could conflict
    with it. Persistence drops appends of an older generation.
    """

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 1


def entries_tuple(entries: Sequence[JournalEvent]) -> tuple[JournalEvent, ...]:
    """Normalise a sequence of entries for an ``Append``."""
    return entries if isinstance(entries, tuple) else tuple(entries)
