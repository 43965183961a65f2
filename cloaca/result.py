"""``PipelineResult``: what ``DefaultRunner.execute()`` returns (API.md 3.10).

Besides the five reference attributes it carries the extras of API.md section 0
item 3: ``execution_id``, ``workflow_name``, ``duration``, ``error`` and per-task
detail in ``task_results``. Timestamps are RFC 3339 strings with ``+00:00``
(API.md 1.5).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NoReturn

from cloaca.context import Context, decode_context_data
from cloaca.runtime.outcome import ExecutionOutcome, TaskOutcome


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 with an explicit ``+00:00`` offset (API.md 1.5)."""
    return moment.astimezone(UTC).isoformat()


def _not_constructible(name: str) -> NoReturn:
    raise TypeError(f"{name} cannot be created directly; it is returned by the runner")


class TaskResult:
    """How one task of an execution ended (an entry of ``task_results``)."""

    __slots__ = ("_outcome",)
    _outcome: TaskOutcome

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _not_constructible("TaskResult")

    @classmethod
    def _from_outcome(cls, outcome: TaskOutcome) -> TaskResult:
        result = object.__new__(cls)
        result._outcome = outcome
        return result

    @property
    def task_id(self) -> str:
        """The short task id, e.g. ``"load"``."""
        return self._outcome.task_id

    @property
    def task_name(self) -> str:
        """The full namespace string ``tenant::package::workflow::task``."""
        return self._outcome.task_name

    @property
    def status(self) -> str:
        """``"Completed"``, ``"Failed"`` or ``"Skipped"``."""
        return self._outcome.status

    @property
    def attempts(self) -> int:
        """How many attempts ran (the last attempt's number)."""
        return self._outcome.attempts

    @property
    def error(self) -> str | None:
        """The error of a failed task, else ``None``."""
        return self._outcome.error

    @property
    def start_time(self) -> str | None:
        """When the last attempt started (RFC 3339), if it ran."""
        moment = self._outcome.started_at
        return format_timestamp(moment) if moment is not None else None

    @property
    def end_time(self) -> str | None:
        """When the task reached its terminal state (RFC 3339)."""
        moment = self._outcome.completed_at
        return format_timestamp(moment) if moment is not None else None

    def __repr__(self) -> str:
        return (
            f"TaskResult(task_id={self.task_id!r}, status={self.status!r}, "
            f"attempts={self.attempts}, error={self.error!r})"
        )


class PipelineResult:
    """Result of one execution; not user-constructible (API.md 3.10)."""

    __slots__ = ("_outcome",)
    _outcome: ExecutionOutcome

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _not_constructible("PipelineResult")

    @classmethod
    def _from_outcome(cls, outcome: ExecutionOutcome) -> PipelineResult:
        result = object.__new__(cls)
        result._outcome = outcome
        return result

    @property
    def status(self) -> str:
        """``"Completed"`` or ``"Failed"`` (a task failed for good)."""
        return self._outcome.status

    @property
    def start_time(self) -> str:
        """When the execution was scheduled (RFC 3339)."""
        return format_timestamp(self._outcome.started_at)

    @property
    def end_time(self) -> str | None:
        """When it reached its terminal state (RFC 3339)."""
        moment = self._outcome.completed_at
        return format_timestamp(moment) if moment is not None else None

    @property
    def final_context(self) -> Context:
        """A new copy of the final context on every access (API.md 4.6)."""
        return Context._from_owned(
            decode_context_data(self._outcome.final_context_json)
        )

    @property
    def error_message(self) -> str | None:
        """``None`` when completed; else names each failed task and its error."""
        return self._outcome.error

    @property
    def error(self) -> str | None:
        """Same as ``error_message`` (API.md section 0 item 3)."""
        return self._outcome.error

    @property
    def execution_id(self) -> str:
        """The execution's id (UUID string)."""
        return str(self._outcome.execution_id)

    @property
    def workflow_name(self) -> str:
        """The name the workflow was executed under."""
        return self._outcome.workflow_name

    @property
    def duration(self) -> float:
        """Seconds from scheduling to the terminal state."""
        end = self._outcome.completed_at or self._outcome.started_at
        return (end - self._outcome.started_at).total_seconds()

    @property
    def task_results(self) -> dict[str, TaskResult]:
        """Per-task detail keyed by short task id (a new dict on every access)."""
        return {t.task_id: TaskResult._from_outcome(t) for t in self._outcome.tasks}

    def __repr__(self) -> str:
        return f"PipelineResult(status={self.status}, error={self.error_message})"
