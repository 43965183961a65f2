"""The ``Store`` protocol: the one seam between the runtime and a database backend.

Every backend (``SqliteStore``, ``PostgresStore``) implements it on Cloacina v0.3.1's
layout (SCHEMA.md) and passes the same conformance suite (``tests/storage``).
Rows read back are msgspec Structs with decoded values: ``uuid.UUID`` ids, aware
UTC ``datetime`` times (truncated to microseconds), JSON kept as text.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import msgspec

from cloaca.storage.journal import JournalEvent


class TaskRow(msgspec.Struct, frozen=True, kw_only=True):
    """One ``task_executions`` row, plus its output context (if it completed)."""

    id: uuid.UUID
    execution_id: uuid.UUID
    task_name: str
    status: str
    attempt: int
    max_attempts: int
    started_at: datetime | None
    completed_at: datetime | None
    retry_at: datetime | None
    error_details: str | None
    last_error: str | None
    recovery_attempts: int
    trigger_rules: str | None
    output_context_json: str | None
    """``contexts.value`` reached through ``task_execution_metadata`` (None if none)."""
    created_at: datetime
    updated_at: datetime


class ExecutionRow(msgspec.Struct, frozen=True, kw_only=True):
    """One ``pipeline_executions`` row with its context text and its tasks."""

    id: uuid.UUID
    pipeline_name: str
    pipeline_version: str
    status: str
    context_json: str | None
    """``contexts.value`` of ``context_id``: the input, or the final context once
    finished (None when ``context_id`` is NULL)."""
    started_at: datetime
    completed_at: datetime | None
    error_details: str | None
    recovery_attempts: int
    created_at: datetime
    updated_at: datetime
    tasks: tuple[TaskRow, ...] = ()
    """In ``created_at`` then ``task_name`` order; empty when loaded without tasks."""


class Store(Protocol):
    """A database backend. One instance per runner; not shared across event loops."""

    @property
    def display_url(self) -> str:
        """The database URL with any password replaced by ``***``."""
        ...

    async def open(self) -> None:
        """Connect, then create or verify the schema (SCHEMA.md section 4).

        Raises ``StorageUnavailable`` (cannot connect / open the file),
        ``SchemaMismatch`` (a partial or newer layout), ``MigrationFailed``.
        """
        ...

    async def close(self) -> None:
        """Release every connection. Idempotent."""
        ...

    async def apply(self, entries: Sequence[JournalEvent]) -> None:
        """Write ``entries`` in order in one transaction (group commit).

        Either all entries are durable when this returns, or none is and a
        ``StorageError`` is raised.
        """
        ...

    async def load_unfinished(self) -> list[ExecutionRow]:
        """Executions in ``Pending``/``Running``, with their tasks (for recovery)."""
        ...

    async def get_execution(self, execution_id: uuid.UUID) -> ExecutionRow | None:
        """One execution with its tasks, or None."""
        ...

    async def list_executions(
        self,
        *,
        pipeline_name: str | None = None,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[ExecutionRow]:
        """Executions newest first (by ``started_at``), without their tasks."""
        ...
