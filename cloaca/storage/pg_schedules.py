"""The cron and trigger tables on PostgreSQL: ``PgScheduleStore``, mixed into the store.

Implements the ``ScheduleStore`` protocol (SCHEMA.md 6-7) on the store's asyncpg
pool. Each method is one statement or one transaction on one pooled connection,
so the cron and trigger actors call it next to Persistence. Times are bound as
naive UTC ``timestamp`` values; rows come back with RFC 3339 ``+00:00`` text
(microseconds, as PostgreSQL stores them), the form the API returns.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, TypeVar

import asyncpg

from cloaca.storage.errors import StorageError
from cloaca.storage.pg_apply import naive_utc
from cloaca.storage.pg_errors import DRIVER_ERRORS
from cloaca.storage.protocol import (
    CronExecutionRow,
    CronScheduleRow,
    CronStats,
    LostCronExecution,
    TriggerExecutionRow,
    TriggerScheduleRow,
    parse_stamp,
)
from cloaca.storage.queries import load_queries

__all__ = ("PgScheduleStore",)

_Q: Final = load_queries("postgres")
T = TypeVar("T")


def _text(value: datetime) -> str:
    return value.replace(tzinfo=UTC).isoformat()


def _opt_text(value: datetime | None) -> str | None:
    return None if value is None else _text(value)


def _uuid(value: uuid.UUID | None) -> uuid.UUID | None:
    # asyncpg hands out its own uuid.UUID subclass; rows promise uuid.UUID.
    return None if value is None else uuid.UUID(bytes=value.bytes)


def _id(value: uuid.UUID) -> uuid.UUID:
    return uuid.UUID(bytes=value.bytes)


def _stamp(text: str) -> datetime:
    """A stamp read from this store, back as the naive value it compares equal to."""
    return naive_utc(parse_stamp(text))


def _count(status: str) -> int:
    # asyncpg returns the command tag, e.g. "UPDATE 3".
    return int(status.rsplit(" ", 1)[-1])


def _schedule(r: asyncpg.Record) -> CronScheduleRow:
    return CronScheduleRow(
        id=_id(r["id"]),
        workflow_name=r["workflow_name"],
        cron_expression=r["cron_expression"],
        timezone=r["timezone"],
        enabled=r["enabled"],
        catchup_policy=r["catchup_policy"],
        start_date=_opt_text(r["start_date"]),
        end_date=_opt_text(r["end_date"]),
        next_run_at=_text(r["next_run_at"]),
        last_run_at=_opt_text(r["last_run_at"]),
        created_at=_text(r["created_at"]),
        updated_at=_text(r["updated_at"]),
    )


def _cron_execution(r: asyncpg.Record) -> CronExecutionRow:
    return CronExecutionRow(
        id=_id(r["id"]),
        schedule_id=_id(r["schedule_id"]),
        scheduled_time=_text(r["scheduled_time"]),
        claimed_at=_text(r["claimed_at"]),
        pipeline_execution_id=_uuid(r["pipeline_execution_id"]),
        created_at=_text(r["created_at"]),
        updated_at=_text(r["updated_at"]),
    )


def _trigger(r: asyncpg.Record) -> TriggerScheduleRow:
    return TriggerScheduleRow(
        id=_id(r["id"]),
        trigger_name=r["trigger_name"],
        workflow_name=r["workflow_name"],
        poll_interval_ms=r["poll_interval_ms"],
        allow_concurrent=r["allow_concurrent"],
        enabled=r["enabled"],
        last_poll_at=_opt_text(r["last_poll_at"]),
        created_at=_text(r["created_at"]),
        updated_at=_text(r["updated_at"]),
    )


def _fire(r: asyncpg.Record) -> TriggerExecutionRow:
    return TriggerExecutionRow(
        id=_id(r["id"]),
        trigger_name=r["trigger_name"],
        context_hash=r["context_hash"],
        pipeline_execution_id=_uuid(r["pipeline_execution_id"]),
        started_at=_text(r["started_at"]),
        completed_at=_opt_text(r["completed_at"]),
        created_at=_text(r["created_at"]),
    )


class PgScheduleStore:
    """``ScheduleStore`` on PostgreSQL, a base of ``PostgresStore`` (see the module)."""

    if TYPE_CHECKING:

        def _require_pool(self) -> asyncpg.Pool: ...

        async def _failed(
            self, pool: asyncpg.Pool, exc: BaseException, action: str
        ) -> StorageError: ...

    async def _run(
        self,
        work: Callable[[asyncpg.Connection], Awaitable[T]],
        *,
        action: str,
        transaction: bool = False,
    ) -> T:
        pool = self._require_pool()
        try:
            async with pool.acquire() as conn:
                if not transaction:
                    return await work(conn)
                async with conn.transaction():
                    return await work(conn)
        except DRIVER_ERRORS as exc:
            raise await self._failed(pool, exc, action) from exc

    # -- cron schedules --------------------------------------------------------

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
        args = (
            schedule_id,
            workflow_name,
            cron_expression,
            timezone,
            naive_utc(next_run_at),
            naive_utc(now),
        )
        await self._run(
            lambda c: c.execute(_Q["insert_cron_schedule"], *args),
            action="register a cron schedule",
        )

    async def list_cron_schedules(
        self, *, enabled_only: bool, limit: int, offset: int
    ) -> list[CronScheduleRow]:
        """Schedules by ``workflow_name`` ascending."""
        rows = await self._run(
            lambda c: c.fetch(_Q["list_cron_schedules"], enabled_only, limit, offset),
            action="list cron schedules",
        )
        return [_schedule(r) for r in rows]

    async def get_cron_schedule(self, schedule_id: uuid.UUID) -> CronScheduleRow | None:
        """One schedule, or None."""
        row = await self._run(
            lambda c: c.fetchrow(_Q["get_cron_schedule"], schedule_id),
            action="read a cron schedule",
        )
        return None if row is None else _schedule(row)

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
        args = (
            schedule_id,
            cron_expression,
            timezone,
            naive_utc(next_run_at),
            naive_utc(now),
        )
        status = await self._run(
            lambda c: c.execute(_Q["update_cron_schedule"], *args),
            action="update a cron schedule",
        )
        return _count(status) == 1

    async def set_cron_schedule_enabled(
        self, schedule_id: uuid.UUID, enabled: bool, now: datetime
    ) -> bool:
        """Touch only ``enabled`` and ``updated_at``; False if no such row."""
        status = await self._run(
            lambda c: c.execute(
                _Q["set_cron_schedule_enabled"], schedule_id, enabled, naive_utc(now)
            ),
            action="enable or disable a cron schedule",
        )
        return _count(status) == 1

    async def delete_cron_schedule(self, schedule_id: uuid.UUID) -> bool:
        """Delete a schedule and its audit rows; False if no such row."""

        async def work(c: asyncpg.Connection) -> str:
            await c.execute(_Q["delete_cron_executions_of_schedule"], schedule_id)
            status: str = await c.execute(_Q["delete_cron_schedule"], schedule_id)
            return status

        status = await self._run(
            work, action="delete a cron schedule", transaction=True
        )
        return _count(status) == 1

    async def due_cron_schedules(
        self, now: datetime
    ) -> tuple[list[CronScheduleRow], str | None]:
        """Due schedules and the earliest upcoming tick (see ``ScheduleStore``)."""

        async def work(
            c: asyncpg.Connection,
        ) -> tuple[list[asyncpg.Record], datetime | None]:
            due = await c.fetch(_Q["due_cron_schedules"], naive_utc(now))
            earliest = await c.fetchval(_Q["earliest_cron_run"])
            return due, earliest

        due, earliest = await self._run(
            work, action="read due cron schedules", transaction=True
        )
        return [_schedule(r) for r in due], _opt_text(earliest)

    async def claim_cron_ticks(
        self,
        schedule_id: uuid.UUID,
        *,
        seen_next_run_at: str,
        next_run_at: datetime,
        ticks: Sequence[datetime],
        now: datetime,
    ) -> list[CronExecutionRow] | None:
        """Claim a due schedule and write its audit rows (see ``ScheduleStore``)."""
        at = naive_utc(now)

        async def work(c: asyncpg.Connection) -> list[asyncpg.Record] | None:
            claimed = await c.fetchval(
                _Q["claim_cron_schedule"],
                schedule_id,
                _stamp(seen_next_run_at),
                naive_utc(next_run_at),
                at,
            )
            if claimed is None:
                return None
            rows: list[asyncpg.Record] = await c.fetch(
                _Q["insert_cron_executions"],
                [uuid.uuid4() for _ in ticks],
                [naive_utc(tick) for tick in ticks],
                schedule_id,
                at,
            )
            return rows

        rows = await self._run(work, action="claim a cron schedule", transaction=True)
        if rows is None:
            return None
        return sorted(
            (_cron_execution(r) for r in rows), key=lambda row: row.scheduled_time
        )

    async def link_cron_execution(
        self, record_id: uuid.UUID, pipeline_execution_id: uuid.UUID, now: datetime
    ) -> bool:
        """Link an unlinked audit row to its execution; False if already linked."""
        linked = await self._run(
            lambda c: c.fetchval(
                _Q["link_cron_execution"],
                record_id,
                pipeline_execution_id,
                naive_utc(now),
            ),
            action="link a cron execution",
        )
        return linked is not None

    async def lost_cron_executions(
        self, stale_before: datetime, limit: int
    ) -> list[LostCronExecution]:
        """Audit rows never linked to an execution (see ``ScheduleStore``)."""
        rows = await self._run(
            lambda c: c.fetch(
                _Q["lost_cron_executions"], naive_utc(stale_before), limit
            ),
            action="read lost cron executions",
        )
        return [
            LostCronExecution(
                execution=_cron_execution(r),
                workflow_name=r["workflow_name"],
                cron_expression=r["cron_expression"],
                timezone=r["timezone"],
            )
            for r in rows
        ]

    async def reclaim_cron_execution(
        self, record_id: uuid.UUID, seen_updated_at: str, now: datetime
    ) -> bool:
        """Take a lost audit row for recovery (compare-and-set on ``updated_at``)."""
        taken = await self._run(
            lambda c: c.fetchval(
                _Q["reclaim_cron_execution"],
                record_id,
                _stamp(seen_updated_at),
                naive_utc(now),
            ),
            action="reclaim a lost cron execution",
        )
        return taken is not None

    async def existing_executions(
        self, execution_ids: Sequence[uuid.UUID]
    ) -> set[uuid.UUID]:
        """Which of ``execution_ids`` have a ``pipeline_executions`` row."""
        rows = await self._run(
            lambda c: c.fetch(_Q["existing_executions"], list(execution_ids)),
            action="look up executions",
        )
        return {_id(r["id"]) for r in rows}

    async def list_cron_executions(
        self, schedule_id: uuid.UUID, *, limit: int, offset: int
    ) -> list[CronExecutionRow]:
        """Audit rows of one schedule, newest ``scheduled_time`` first."""
        rows = await self._run(
            lambda c: c.fetch(_Q["list_cron_executions"], schedule_id, limit, offset),
            action="read cron execution history",
        )
        return [_cron_execution(r) for r in rows]

    async def cron_execution_stats(
        self, since: datetime, lost_before: datetime
    ) -> CronStats:
        """Counts over audit rows with ``claimed_at >= since``."""
        row = await self._run(
            lambda c: c.fetchrow(
                _Q["cron_execution_stats"], naive_utc(since), naive_utc(lost_before)
            ),
            action="read cron execution statistics",
        )
        assert row is not None
        return CronStats(total=row["total"], linked=row["linked"], lost=row["lost"])

    # -- trigger schedules -----------------------------------------------------

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
        """Create an enabled schedule, or update the existing one (enabled kept)."""
        args = (
            schedule_id,
            trigger_name,
            workflow_name,
            poll_interval_ms,
            allow_concurrent,
            naive_utc(now),
        )
        await self._run(
            lambda c: c.execute(_Q["upsert_trigger_schedule"], *args),
            action="register a trigger schedule",
        )

    async def list_trigger_schedules(
        self, *, enabled_only: bool, limit: int, offset: int
    ) -> list[TriggerScheduleRow]:
        """Trigger schedules, newest first."""
        rows = await self._run(
            lambda c: c.fetch(
                _Q["list_trigger_schedules"], enabled_only, limit, offset
            ),
            action="list trigger schedules",
        )
        return [_trigger(r) for r in rows]

    async def get_trigger_schedule(
        self, trigger_name: str
    ) -> TriggerScheduleRow | None:
        """One trigger schedule, or None."""
        row = await self._run(
            lambda c: c.fetchrow(_Q["get_trigger_schedule"], trigger_name),
            action="read a trigger schedule",
        )
        return None if row is None else _trigger(row)

    async def set_trigger_enabled(
        self, trigger_name: str, enabled: bool, now: datetime
    ) -> bool:
        """Enable or disable polling; False if no such row."""
        status = await self._run(
            lambda c: c.execute(
                _Q["set_trigger_enabled"], trigger_name, enabled, naive_utc(now)
            ),
            action="enable or disable a trigger",
        )
        return _count(status) == 1

    async def record_trigger_poll(self, trigger_name: str, now: datetime) -> None:
        """Set ``last_poll_at`` after a successful poll."""
        await self._run(
            lambda c: c.execute(
                _Q["record_trigger_poll"], trigger_name, naive_utc(now)
            ),
            action="record a trigger poll",
        )

    async def insert_trigger_execution(
        self,
        *,
        record_id: uuid.UUID,
        trigger_name: str,
        context_hash: str,
        now: datetime,
    ) -> bool:
        """Record a fire in progress; False if an identical fire is in progress."""
        inserted = await self._run(
            lambda c: c.fetchval(
                _Q["insert_trigger_execution"],
                record_id,
                trigger_name,
                context_hash,
                naive_utc(now),
            ),
            action="record a trigger fire",
        )
        return inserted is not None

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
        args = (
            record_id,
            trigger_name,
            context_hash,
            pipeline_execution_id,
            naive_utc(started_at),
            naive_utc(now),
        )
        await self._run(
            lambda c: c.execute(_Q["insert_completed_trigger_execution"], *args),
            action="record a trigger fire",
        )

    async def link_trigger_execution(
        self,
        record_id: uuid.UUID,
        pipeline_execution_id: uuid.UUID | None,
        now: datetime,
        *,
        completed: bool,
    ) -> None:
        """Link a fire to its execution, and mark it completed if ``completed``."""
        await self._run(
            lambda c: c.execute(
                _Q["link_trigger_execution"],
                record_id,
                pipeline_execution_id,
                naive_utc(now),
                completed,
            ),
            action="link a trigger fire",
        )

    async def complete_trigger_executions(
        self, pipeline_execution_id: uuid.UUID, now: datetime
    ) -> int:
        """Mark the fires linked to a finished execution completed."""
        status = await self._run(
            lambda c: c.execute(
                _Q["complete_trigger_executions"],
                pipeline_execution_id,
                naive_utc(now),
            ),
            action="complete a trigger fire",
        )
        return _count(status)

    async def sweep_trigger_executions(
        self, unlinked_before: datetime, now: datetime
    ) -> int:
        """Complete in-progress fires that will never complete otherwise."""
        status = await self._run(
            lambda c: c.execute(
                _Q["sweep_trigger_executions"],
                naive_utc(unlinked_before),
                naive_utc(now),
            ),
            action="complete finished trigger fires",
        )
        return _count(status)

    async def list_trigger_executions(
        self, trigger_name: str, *, limit: int, offset: int
    ) -> list[TriggerExecutionRow]:
        """Fires of one trigger, newest first."""
        rows = await self._run(
            lambda c: c.fetch(
                _Q["list_trigger_executions"], trigger_name, limit, offset
            ),
            action="read trigger execution history",
        )
        return [_fire(r) for r in rows]
