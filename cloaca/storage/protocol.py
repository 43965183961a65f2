"""The ``Store`` protocol: the one seam between the runtime and a database backend.

Every backend (``SqliteStore``, ``PostgresStore``) implements it on Cloacina v0.3.1's
layout (SCHEMA.md) and passes the same conformance suite (``tests/storage``).
Rows read back are msgspec Structs with decoded values: ``uuid.UUID`` ids, aware
UTC ``datetime`` times (truncated to microseconds), JSON kept as text.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
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


# -- schedules (cron and triggers; SCHEMA.md 6-7) ---------------------------------
#
# Timestamps of schedule rows are kept as RFC 3339 text with ``+00:00``, exactly as
# stored: SQLite's text verbatim (0.3.1 wrote nanoseconds), PostgreSQL's
# microsecond ``timestamp`` formatted the same way. The management methods hand
# them to Python unchanged (API.md 3.9.4); ``parse_stamp`` reads one as a datetime.


def parse_stamp(text: str) -> datetime:
    """A stored RFC 3339 timestamp as an aware UTC ``datetime`` (to microseconds)."""
    return datetime.fromisoformat(text).astimezone(UTC)


class CronScheduleRow(msgspec.Struct, frozen=True, kw_only=True):
    """One ``cron_schedules`` row."""

    id: uuid.UUID
    workflow_name: str
    cron_expression: str
    timezone: str
    enabled: bool
    catchup_policy: str
    start_date: str | None
    end_date: str | None
    next_run_at: str
    last_run_at: str | None
    created_at: str
    updated_at: str


class CronExecutionRow(msgspec.Struct, frozen=True, kw_only=True):
    """One ``cron_executions`` audit row: a claimed tick and its execution."""

    id: uuid.UUID
    schedule_id: uuid.UUID
    scheduled_time: str
    claimed_at: str
    pipeline_execution_id: uuid.UUID | None
    created_at: str
    updated_at: str


class LostCronExecution(msgspec.Struct, frozen=True, kw_only=True):
    """An audit row never linked to an execution, with what re-running it needs."""

    execution: CronExecutionRow
    workflow_name: str
    cron_expression: str
    timezone: str


class CronStats(msgspec.Struct, frozen=True, kw_only=True):
    """Counts of audit rows claimed since a time (API.md 3.9.4 statistics)."""

    total: int
    linked: int
    lost: int


class TriggerScheduleRow(msgspec.Struct, frozen=True, kw_only=True):
    """One ``trigger_schedules`` row."""

    id: uuid.UUID
    trigger_name: str
    workflow_name: str
    poll_interval_ms: int
    allow_concurrent: bool
    enabled: bool
    last_poll_at: str | None
    created_at: str
    updated_at: str


class TriggerExecutionRow(msgspec.Struct, frozen=True, kw_only=True):
    """One ``trigger_executions`` row: a fire and the execution it started."""

    id: uuid.UUID
    trigger_name: str
    context_hash: str
    pipeline_execution_id: uuid.UUID | None
    started_at: str
    completed_at: str | None
    created_at: str


class ScheduleStore(Protocol):
    """The cron and trigger tables (SCHEMA.md 6-7), implemented by both stores.

    Every method is one self-contained transaction, so the cron and trigger
    actors call it directly, next to Persistence.
    """

    async def insert_cron_schedule(
        self,
        *,
        schedule_id: uuid.UUID,
        workflow_name: str,
        cron_expression: str,
        timezone: str,
        next_run_at: datetime,
        now: datetime,
    ) -> None:
        """Create an enabled ``skip`` schedule (SCHEMA.md 6, registration)."""
        ...

    async def list_cron_schedules(
        self, *, enabled_only: bool, limit: int, offset: int
    ) -> list[CronScheduleRow]:
        """Schedules by ``workflow_name`` ascending."""
        ...

    async def get_cron_schedule(self, schedule_id: uuid.UUID) -> CronScheduleRow | None:
        """One schedule, or None."""
        ...

    async def update_cron_schedule(
        self,
        schedule_id: uuid.UUID,
        *,
        cron_expression: str,
        timezone: str,
        next_run_at: datetime,
        now: datetime,
    ) -> bool:
        """Replace expression, zone and next tick; False if there is no such row."""
        ...

    async def set_cron_schedule_enabled(
        self, schedule_id: uuid.UUID, enabled: bool, now: datetime
    ) -> bool:
        """Touch only ``enabled`` and ``updated_at``; False if no such row."""
        ...

    async def delete_cron_schedule(self, schedule_id: uuid.UUID) -> bool:
        """Delete a schedule and its audit rows; False if no such row."""
        ...

    async def due_cron_schedules(
        self, now: datetime
    ) -> tuple[list[CronScheduleRow], str | None]:
        """Due schedules and the earliest upcoming tick.

        Returns enabled schedules with ``next_run_at <= now``, and the earliest
        ``next_run_at`` of all enabled schedules (None when there are none).
        """
        ...

    async def claim_cron_ticks(
        self,
        schedule_id: uuid.UUID,
        *,
        seen_next_run_at: str,
        next_run_at: datetime,
        ticks: Sequence[datetime],
        now: datetime,
    ) -> list[CronExecutionRow] | None:
        """Claim a due schedule and write one audit row per tick, atomically.

        The claim moves ``next_run_at`` only if it still is ``seen_next_run_at``
        and the schedule is enabled; otherwise nothing is written and None is
        returned. Ticks another claimer already recorded (the UNIQUE guard) are
        left out of the returned new rows.
        """
        ...

    async def link_cron_execution(
        self, record_id: uuid.UUID, pipeline_execution_id: uuid.UUID, now: datetime
    ) -> bool:
        """Link an unlinked audit row to its execution; False if already linked."""
        ...

    async def lost_cron_executions(
        self, stale_before: datetime, limit: int
    ) -> list[LostCronExecution]:
        """Audit rows that were never linked to an execution.

        Those claimed and last touched before ``stale_before``, of schedules that
        still exist and are enabled, newest tick first (recent ones cannot starve).
        """
        ...

    async def reclaim_cron_execution(
        self, record_id: uuid.UUID, seen_updated_at: str, now: datetime
    ) -> bool:
        """Take a lost audit row for recovery (compare-and-set on ``updated_at``)."""
        ...

    async def existing_executions(
        self, execution_ids: Sequence[uuid.UUID]
    ) -> set[uuid.UUID]:
        """Which of ``execution_ids`` have a ``pipeline_executions`` row."""
        ...

    async def list_cron_executions(
        self, schedule_id: uuid.UUID, *, limit: int, offset: int
    ) -> list[CronExecutionRow]:
        """Audit rows of one schedule, newest ``scheduled_time`` first."""
        ...

    async def cron_execution_stats(
        self, since: datetime, lost_before: datetime
    ) -> CronStats:
        """Counts over audit rows with ``claimed_at >= since``."""
        ...

    async def upsert_trigger_schedule(
        self,
        *,
        schedule_id: uuid.UUID,
        trigger_name: str,
        workflow_name: str,
        poll_interval_ms: int,
        allow_concurrent: bool,
        now: datetime,
    ) -> None:
        """Create an enabled schedule, or update the existing one.

        An update changes workflow, interval and concurrency (``enabled`` is kept).
        """
        ...

    async def list_trigger_schedules(
        self, *, enabled_only: bool, limit: int, offset: int
    ) -> list[TriggerScheduleRow]:
        """Trigger schedules, newest first."""
        ...

    async def get_trigger_schedule(
        self, trigger_name: str
    ) -> TriggerScheduleRow | None:
        """One trigger schedule, or None."""
        ...

    async def set_trigger_enabled(
        self, trigger_name: str, enabled: bool, now: datetime
    ) -> bool:
        """Enable or disable polling; False if no such row."""
        ...

    async def record_trigger_poll(self, trigger_name: str, now: datetime) -> None:
        """Set ``last_poll_at`` after a successful poll."""
        ...

    async def insert_trigger_execution(
        self,
        *,
        record_id: uuid.UUID,
        trigger_name: str,
        context_hash: str,
        now: datetime,
    ) -> bool:
        """Record a fire in progress; False if an identical fire is in progress."""
        ...

    async def insert_completed_trigger_execution(
        self,
        *,
        record_id: uuid.UUID,
        trigger_name: str,
        context_hash: str,
        pipeline_execution_id: uuid.UUID,
        started_at: datetime,
        now: datetime,
    ) -> None:
        """Record a finished fire that ran next to an identical one."""
        ...

    async def link_trigger_execution(
        self,
        record_id: uuid.UUID,
        pipeline_execution_id: uuid.UUID | None,
        now: datetime,
        *,
        completed: bool,
    ) -> None:
        """Link a fire to its execution, and mark it completed if ``completed``."""
        ...

    async def complete_trigger_executions(
        self, pipeline_execution_id: uuid.UUID, now: datetime
    ) -> int:
        """Mark the fires linked to a finished execution completed."""
        ...

    async def sweep_trigger_executions(
        self, unlinked_before: datetime, now: datetime
    ) -> int:
        """Complete in-progress fires that will never complete otherwise.

        Those whose execution has ended, and those never linked that started
        before ``unlinked_before`` (a lost hand-off).
        """
        ...

    async def list_trigger_executions(
        self, trigger_name: str, *, limit: int, offset: int
    ) -> list[TriggerExecutionRow]:
        """Fires of one trigger, newest first."""
        ...


# -- leases (several runners on one database; DESIGN.md, Scale-out) ---------------


class LeaseListener(Protocol):
    """An open subscription to work wake-ups; see ``LeaseStore.listen``."""

    @property
    def alive(self) -> bool:
        """False once the connection is gone (the caller listens again)."""
        ...

    async def aclose(self) -> None:
        """Stop listening and release the connection. Idempotent."""
        ...


class LeaseStore(Protocol):
    """Execution leases: which runner drives which unfinished execution.

    A runner holds a lease on every execution it drives and renews it by
    heartbeat; a lease that is not renewed expires, and another runner may take
    the execution over. Every journal batch of a runner is written together with
    a check that it still holds the leases of the executions the batch touches
    (``apply_leased``), so a runner whose work was taken over cannot record a
    second completion. Lease times are the database's clock.
    """

    async def prepare(self) -> None:
        """Create the lease table if it is missing (idempotent)."""
        ...

    async def apply_leased(
        self,
        entries: Sequence[JournalEvent],
        *,
        runner_id: uuid.UUID,
        touched: Sequence[uuid.UUID],
        ttl: float,
    ) -> None:
        """Write ``entries`` like ``Store.apply``, only while the leases are ours.

        In the batch's transaction: executions it creates get a lease of
        ``runner_id``; the leases of ``touched`` (and of every execution an entry
        names) must be held by ``runner_id`` and are renewed for ``ttl`` seconds;
        executions it finishes lose their lease.

        Raises ``LeaseLost`` (naming the executions) when a lease is held by
        another runner or missing; nothing of the batch is written then.
        """
        ...

    async def claim(
        self,
        *,
        runner_id: uuid.UUID,
        statuses: Sequence[str],
        workflows: Sequence[str],
        limit: int,
        ttl: float,
    ) -> list[uuid.UUID]:
        """Take leases on up to ``limit`` executions nobody holds a live lease on.

        Only executions in ``statuses`` of the ``workflows`` named, oldest first;
        those another claimer is taking at the same moment are skipped.
        """
        ...

    async def heartbeat(
        self, *, runner_id: uuid.UUID, ttl: float, owned: Sequence[uuid.UUID]
    ) -> set[uuid.UUID]:
        """Renew the leases of ``runner_id`` on ``owned``; return those others hold.

        A lease of this runner on an execution not in ``owned`` (taken by a claim
        whose answer was lost) is left to run out, so it is claimed again.
        """
        ...

    async def release(self, runner_id: uuid.UUID) -> int:
        """Drop every lease of ``runner_id`` (graceful leave); wake the others."""
        ...

    async def notify_work(self) -> None:
        """Wake the runners listening on this database (or schema)."""
        ...

    async def listen(self, on_wake: Callable[[], None]) -> LeaseListener:
        """Call ``on_wake`` (on the loop) whenever work is announced here."""
        ...
