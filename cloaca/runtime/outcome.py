"""What the runtime reports when an execution ends (the source of PipelineResult)."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec


class TaskOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """How one task of a finished execution ended."""

    task_name: str
    task_id: str
    status: str
    attempts: int
    error: str | None
    started_at: datetime | None
    completed_at: datetime | None


class ExecutionOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """A finished (or abandoned) execution."""

    execution_id: uuid.UUID
    workflow_name: str
    status: str
    started_at: datetime
    completed_at: datetime | None
    final_context_json: str
    error: str | None
    tasks: tuple[TaskOutcome, ...] = ()
    origin: str | None = None
    """``None`` for ``execute()``; ``cron:<schedule id>`` or ``trigger:<name>``."""
