"""The pure execution state machine: task states, readiness, inputs and outcome.

One ``ExecutionState`` per live execution, owned by the Scheduler. Nothing here
does I/O or reads a clock: the Scheduler passes times in and turns the returned
facts into journal entries and dispatches. Transitions follow API.md 4.3; the
task input follows 4.5 and the final context 4.6.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

from cloaca.context import decode_context_data, encode_context_data
from cloaca.runtime import rules
from cloaca.runtime.merge import merge_into

NOT_STARTED: Final = "NotStarted"
READY: Final = "Ready"
RUNNING: Final = "Running"
COMPLETED: Final = "Completed"
FAILED: Final = "Failed"
SKIPPED: Final = "Skipped"
TERMINAL: Final = frozenset({COMPLETED, FAILED, SKIPPED})
RUNNING_EXECUTION: Final = "Running"
"""``pipeline_executions.status`` once the first attempt started."""

EMPTY_JSON: Final = "{}"

ALWAYS_RULE: Final[Mapping[str, Any]] = MappingProxyType({"type": "Always"})
"""The trigger rule of every Python task, shared (read-only) by all of them."""


_V4_MASK: Final = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_V4_BITS: Final = (0x4000 << 64) | (0x8000 << 48)
_POOL_BYTES: Final = 16 * 256
_random_ids: list[int] = []


def _refill_ids() -> None:
    data = os.urandom(_POOL_BYTES)
    from_bytes = int.from_bytes
    _random_ids.extend(
        (from_bytes(data[i : i + 16], "big") & _V4_MASK) | _V4_BITS
        for i in range(0, _POOL_BYTES, 16)
    )


# A forked child must not hand out the ids its parent also holds.
os.register_at_fork(after_in_child=_random_ids.clear)

_new_object = object.__new__
_set_slot = object.__setattr__
_UNKNOWN_SAFETY: Final = uuid.SafeUUID.unknown


def new_id() -> uuid.UUID:
    """A random (version 4) UUID, like ``uuid.uuid4()`` at a quarter of the cost.

    The randomness comes from ``os.urandom`` in bulk (one call per 256 ids), and
    the UUID is built without re-validating what is valid by construction.
    """
    if not _random_ids:
        _refill_ids()
    value = _random_ids.pop()
    made: uuid.UUID = _new_object(uuid.UUID)
    _set_slot(made, "int", value)
    _set_slot(made, "is_safe", _UNKNOWN_SAFETY)
    return made


def short_id(task_name: str) -> str:
    """The task id part of a ``tenant::package::workflow::task`` name."""
    return task_name.rsplit("::", 1)[-1]


class TaskState:
    """What the scheduler knows about one task of one execution."""

    __slots__ = (
        "attempt",
        "completed_at",
        "context_id",
        "dependencies",
        "dependents",
        "error",
        "max_attempts",
        "name",
        "output_json",
        "pending_deps",
        "retry_at",
        "row_id",
        "rule",
        "start_marked",
        "started_at",
        "status",
    )

    def __init__(
        self,
        *,
        name: str,
        row_id: uuid.UUID,
        dependencies: tuple[str, ...],
        max_attempts: int,
        status: str = NOT_STARTED,
        attempt: int = 1,
        rule: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.row_id = row_id
        self.dependencies = dependencies
        self.dependents: tuple[str, ...] = ()
        self.pending_deps = len(dependencies)
        self.max_attempts = max_attempts
        self.status = status
        self.attempt = attempt
        self.rule: Mapping[str, Any] = rule or ALWAYS_RULE
        self.output_json: str | None = None
        self.context_id: uuid.UUID | None = None
        self.started_at: datetime | None = None
        self.completed_at: datetime | None = None
        self.error: str | None = None
        # Not before this time (a retry waiting out its backoff, read back from
        # the database).
        self.retry_at: datetime | None = None
        # The row already says Running for the current attempt.
        self.start_marked = False

    @property
    def id(self) -> str:
        """The short task id."""
        return short_id(self.name)


class ExecutionState:
    """One live execution: its tasks and how far they got."""

    __slots__ = (
        "final_context_id",
        "final_output",
        "finished",
        "id",
        "input_json",
        "origin",
        "remaining",
        "running",
        "started_at",
        "tasks",
        "version",
        "workflow_name",
    )

    def __init__(
        self,
        *,
        execution_id: uuid.UUID,
        workflow_name: str,
        version: str,
        input_json: str,
        started_at: datetime,
        tasks: Iterable[TaskState],
    ) -> None:
        self.id = execution_id
        self.workflow_name = workflow_name
        self.version = version
        self.input_json = input_json
        self.started_at = started_at
        self.tasks: dict[str, TaskState] = {t.name: t for t in tasks}
        dependents: dict[str, list[str]] = {name: [] for name in self.tasks}
        for task in self.tasks.values():
            for dep in task.dependencies:
                if dep in dependents:
                    dependents[dep].append(task.name)
        for name, names in dependents.items():
            self.tasks[name].dependents = tuple(sorted(names))
        self.remaining = sum(1 for t in self.tasks.values() if t.status not in TERMINAL)
        # Latest successful non-empty output (API.md 4.6): (completed_at, task
        # name, json, id). Ties (the same millisecond) are broken by the graph
        # (``_later``), not by whichever result was handled last, so an execution
        # rebuilt from the database reports the final context that was stored.
        self.final_output: tuple[datetime, str, str, uuid.UUID | None] | None = None
        self.final_context_id: uuid.UUID | None = None
        self.finished = False
        self.running = False
        self.origin: str | None = None
        for task in self.tasks.values():
            if task.status in TERMINAL:
                self._note_output(task)

    # -- readiness -------------------------------------------------------------

    def recount_pending(self) -> None:
        """Recompute ``pending_deps`` from dependency statuses (after a rebuild)."""
        for task in self.tasks.values():
            task.pending_deps = sum(
                1
                for dep in task.dependencies
                if dep in self.tasks and self.tasks[dep].status not in TERMINAL
            )

    def startable(self) -> list[TaskState]:
        """Tasks whose dependencies are terminal and that have not run yet."""
        return [
            t
            for t in self.tasks.values()
            if t.pending_deps == 0 and t.status in (NOT_STARTED, READY)
        ]

    def release(self, finished: TaskState) -> list[TaskState]:
        """``finished`` is durably terminal: return dependents that became startable."""
        released = []
        for name in finished.dependents:
            dependent = self.tasks[name]
            dependent.pending_deps -= 1
            if dependent.pending_deps == 0 and dependent.status == NOT_STARTED:
                released.append(dependent)
        return released

    def rule_holds(self, task: TaskState, input_data: Mapping[str, Any]) -> bool:
        """Evaluate the task's trigger rule (API.md 4.10)."""
        if rules.is_always(task.rule):
            return True
        statuses = {name: t.status for name, t in self.tasks.items()}
        return rules.evaluate(task.rule, statuses, input_data)

    # -- inputs ----------------------------------------------------------------

    def input_json_for(self, task: TaskState) -> str:
        """The task's input context as JSON text (API.md 4.5)."""
        if not task.dependencies:
            return self.input_json
        outputs = [
            self.tasks[dep].output_json or EMPTY_JSON
            for dep in sorted(task.dependencies)
            if dep in self.tasks and self.tasks[dep].status == COMPLETED
        ]
        if not outputs:
            return EMPTY_JSON
        if len(outputs) == 1:
            return outputs[0]
        merged: dict[str, Any] = {}
        for text in outputs:
            merge_into(merged, decode_context_data(text))
        return encode_context_data(merged)

    # -- transitions -----------------------------------------------------------

    def mark_running(self, task: TaskState, at: datetime) -> None:
        """An attempt of ``task`` is executing."""
        task.status = RUNNING
        task.started_at = at
        task.start_marked = True
        task.retry_at = None

    def mark_completed(
        self,
        task: TaskState,
        output_json: str,
        context_id: uuid.UUID | None,
        at: datetime,
    ) -> None:
        """``task`` succeeded with ``output_json``."""
        task.status = COMPLETED
        task.output_json = output_json
        task.context_id = context_id
        task.completed_at = at
        task.error = None
        self.remaining -= 1
        self._note_output(task)

    def mark_retrying(self, task: TaskState, error: str) -> None:
        """A failed attempt of ``task`` will be retried as attempt + 1."""
        task.status = READY
        task.attempt += 1
        task.error = error
        task.started_at = None
        task.start_marked = False

    def mark_failed(self, task: TaskState, error: str, at: datetime) -> None:
        """``task`` failed for good."""
        task.status = FAILED
        task.error = error
        task.completed_at = at
        self.remaining -= 1

    def mark_skipped(self, task: TaskState, at: datetime) -> None:
        """``task``'s trigger rule was false."""
        task.status = SKIPPED
        task.error = rules.SKIP_REASON
        task.completed_at = at
        self.remaining -= 1

    def _note_output(self, task: TaskState) -> None:
        if (
            task.status == COMPLETED
            and task.output_json is not None
            and task.output_json != EMPTY_JSON
            and task.completed_at is not None
            and (
                self.final_output is None
                or task.completed_at > self.final_output[0]
                or (
                    task.completed_at == self.final_output[0]
                    and self._later(task.name, self.final_output[1])
                )
            )
        ):
            self.final_output = (
                task.completed_at,
                task.name,
                task.output_json,
                task.context_id,
            )

    def _later(self, name: str, other: str) -> bool:
        """Whether ``name`` counts as completed after ``other`` at the same instant.

        A deeper task (a longer chain of dependencies above it) is later, so a
        dependent always wins over what it depends on; at equal depth, the later
        name. Only ties get here, so the depths are not kept.
        """
        return (self._depth(name), name) >= (self._depth(other), other)

    def _depth(self, name: str) -> int:
        task = self.tasks.get(name)
        if task is None or not task.dependencies:
            return 0
        return 1 + max(self._depth(dep) for dep in task.dependencies)

    # -- outcome ---------------------------------------------------------------

    @property
    def done(self) -> bool:
        """No task is outside Completed/Failed/Skipped."""
        return self.remaining == 0

    @property
    def status(self) -> str:
        """``Failed`` if any task failed for good, else ``Completed`` (API.md 4.6)."""
        return FAILED if self.failed_tasks() else COMPLETED

    def failed_tasks(self) -> list[TaskState]:
        """Tasks that ended ``Failed``, in name order."""
        return sorted(
            (t for t in self.tasks.values() if t.status == FAILED), key=lambda t: t.name
        )

    def error_message(self) -> str | None:
        """API.md section 0 item 2: name each failed task and its error."""
        failed = self.failed_tasks()
        if not failed:
            return None
        parts = [f"Task '{t.id}' failed: {t.error}" for t in failed]
        return "; ".join(parts)

    def final_context_json(self) -> str:
        """The final context of API.md 4.6 as JSON text."""
        if self.final_output is not None:
            return self.final_output[2]
        return self.input_json

    def final_context_ref(self) -> uuid.UUID | None:
        """The ``contexts`` row the execution should point to at the end."""
        return self.final_output[3] if self.final_output is not None else None
