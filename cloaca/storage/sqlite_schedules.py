"""The cron and trigger tables on SQLite: ``SqliteScheduleStore``, mixed into the store.

Implements the ``ScheduleStore`` protocol (SCHEMA.md 6-7) on the store's one
connection. Each method is one transaction run in aiosqlite's worker thread in one
hop (``BEGIN IMMEDIATE`` for writers), shielded from cancellation, under the
store's lock, so the cron and trigger actors can call it next to Persistence.
Timestamps of the rows read back are the stored text, verbatim; times written are
``encode_timestamp`` text, and ticks carry no fraction, so a tick is encoded the
same way by every writer and ``UNIQUE (schedule_id, scheduled_time)`` holds.
"""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio

from cloaca.storage.errors import StorageError
from cloaca.storage.protocol import (
    CronExecutionRow,
    CronScheduleRow,
    CronStats,
    LostCronExecution,
    TriggerExecutionRow,
    TriggerScheduleRow,
)
from cloaca.storage.queries import load_queries
from cloaca.storage.sqlite_codec import encode_timestamp as _ts

if TYPE_CHECKING:
    import aiosqlite

__all__ = ("SqliteScheduleStore",)

_Q: Final = load_queries("sqlite")
T = TypeVar("T")
_Db = sqlite3.Connection


def _uuid(value: bytes | str | None) -> uuid.UUID | None:
    if value is None:
        return None
    if isinstance(value, bytes) and len(value) == 16:
        return uuid.UUID(bytes=value)
    return uuid.UUID(value.decode() if isinstance(value, bytes) else value)


def _id(value: bytes | str) -> uuid.UUID:
    ident = _uuid(value)
    assert ident is not None
    return ident


def _schedule(r: Sequence[Any]) -> CronScheduleRow:
    return CronScheduleRow(
        id=_id(r[0]),
        workflow_name=r[1],
        cron_expression=r[2],
        timezone=r[3],
        enabled=bool(r[4]),
        catchup_policy=r[5],
        start_date=r[6],
        end_date=r[7],
        next_run_at=r[8],
        last_run_at=r[9],
        created_at=r[10],
        updated_at=r[11],
    )


def _cron_execution(r: Sequence[Any]) -> CronExecutionRow:
    return CronExecutionRow(
        id=_id(r[0]),
        schedule_id=_id(r[1]),
        scheduled_time=r[2],
        claimed_at=r[3],
        pipeline_execution_id=_uuid(r[4]),
        created_at=r[5],
        updated_at=r[6],
    )


def _trigger(r: Sequence[Any]) -> TriggerScheduleRow:
    return TriggerScheduleRow(
        id=_id(r[0]),
        trigger_name=r[1],
        workflow_name=r[2],
        poll_interval_ms=r[3],
        allow_concurrent=bool(r[4]),
        enabled=bool(r[5]),
        last_poll_at=r[6],
        created_at=r[7],
        updated_at=r[8],
    )


def _fire(r: Sequence[Any]) -> TriggerExecutionRow:
    return TriggerExecutionRow(
        id=_id(r[0]),
        trigger_name=r[1],
        context_hash=r[2],
        pipeline_execution_id=_uuid(r[3]),
        started_at=r[4],
        completed_at=r[5],
        created_at=r[6],
    )


def _in_transaction(db: _Db, work: Callable[[_Db], T], begin: str) -> T:
    """Run ``work`` inside one transaction, in the worker thread."""
    db.execute(_Q[begin])
    try:
        result = work(db)
        db.execute(_Q["commit"])
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            if db.in_transaction:
                db.execute(_Q["rollback"])
        raise
    return result


def _changed(db: _Db, name: str, params: Mapping[str, object]) -> int:
    return db.execute(_Q[name], params).rowcount


class SqliteScheduleStore:
    """``ScheduleStore`` on SQLite, a base of ``SqliteStore`` (see the module)."""

    if TYPE_CHECKING:
        _lock: anyio.Lock

        def _require_open(self) -> aiosqlite.Connection: ...

        def _translate(
            self, exc: sqlite3.Error | ValueError, doing: str
        ) -> StorageError: ...

    async def _hop(
        self, work: Callable[[_Db], T], *, doing: str, write: bool = True
    ) -> T:
        async with self._lock:
            conn = self._require_open()
            with anyio.CancelScope(shield=True):
                begin = "begin_write" if write else "begin_read"
                try:
                    # aiosqlite's own dispatch: the whole transaction in one hop.
                    result: T = await conn._execute(  # type: ignore[no-untyped-call]
                        _in_transaction, conn._conn, work, begin
                    )
                except (sqlite3.Error, ValueError) as exc:
                    raise self._translate(exc, doing) from exc
        return result

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
        params = {
            "id": schedule_id.bytes,
            "workflow_name": workflow_name,
            "cron_expression": cron_expression,
            "timezone": timezone,
            "next_run_at": _ts(next_run_at),
            "at": _ts(now),
        }
        await self._hop(
            lambda db: _changed(db, "insert_cron_schedule", params),
            doing="registering a cron schedule in",
        )

    async def list_cron_schedules(
        self, *, enabled_only: bool, limit: int, offset: int
    ) -> list[CronScheduleRow]:
        """Schedules by ``workflow_name`` ascending."""
        params = {"enabled_only": int(enabled_only), "limit": limit, "offset": offset}
        rows = await self._hop(
            lambda db: db.execute(_Q["list_cron_schedules"], params).fetchall(),
            doing="listing cron schedules of",
            write=False,
        )
        return [_schedule(r) for r in rows]

    async def get_cron_schedule(self, schedule_id: uuid.UUID) -> CronScheduleRow | None:
        """One schedule, or None."""
        params = {"id": schedule_id.bytes}
        row = await self._hop(
            lambda db: db.execute(_Q["get_cron_schedule"], params).fetchone(),
            doing="reading a cron schedule of",
            write=False,
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
        params = {
            "id": schedule_id.bytes,
            "cron_expression": cron_expression,
            "timezone": timezone,
            "next_run_at": _ts(next_run_at),
            "at": _ts(now),
        }
        changed = await self._hop(
            lambda db: _changed(db, "update_cron_schedule", params),
            doing="updating a cron schedule in",
        )
        return changed == 1

    async def set_cron_schedule_enabled(
        self, schedule_id: uuid.UUID, enabled: bool, now: datetime
    ) -> bool:
        """Touch only ``enabled`` and ``updated_at``; False if no such row."""
        params = {"id": schedule_id.bytes, "enabled": int(enabled), "at": _ts(now)}
        changed = await self._hop(
            lambda db: _changed(db, "set_cron_schedule_enabled", params),
            doing="enabling or disabling a cron schedule in",
        )
        return changed == 1

    async def delete_cron_schedule(self, schedule_id: uuid.UUID) -> bool:
        """Delete a schedule and its audit rows; False if no such row."""
        params = {"id": schedule_id.bytes}

        def work(db: _Db) -> int:
            _changed(db, "delete_cron_executions_of_schedule", params)
            return _changed(db, "delete_cron_schedule", params)

        return await self._hop(work, doing="deleting a cron schedule from") == 1

    async def due_cron_schedules(
        self, now: datetime
    ) -> tuple[list[CronScheduleRow], str | None]:
        """Due schedules and the earliest upcoming tick (see ``ScheduleStore``)."""
        params = {"now": _ts(now)}

        def work(db: _Db) -> tuple[list[Any], str | None]:
            due = db.execute(_Q["due_cron_schedules"], params).fetchall()
            earliest = db.execute(_Q["earliest_cron_run"]).fetchone()
            return due, None if earliest is None else earliest[0]

        due, earliest = await self._hop(
            work, doing="reading due cron schedules of", write=False
        )
        return [_schedule(r) for r in due], earliest

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
        at = _ts(now)
        claim = {
            "id": schedule_id.bytes,
            "seen_next_run_at": seen_next_run_at,
            "next_run_at": _ts(next_run_at),
            "at": at,
        }
        audits = [
            {
                "id": uuid.uuid4().bytes,
                "schedule_id": schedule_id.bytes,
                "scheduled_time": _ts(tick),
                "at": at,
            }
            for tick in ticks
        ]

        def work(db: _Db) -> list[Any] | None:
            if _changed(db, "claim_cron_schedule", claim) != 1:
                return None
            new = [a for a in audits if _changed(db, "insert_cron_execution", a) == 1]
            query = _Q["get_cron_execution"]
            return [db.execute(query, audit).fetchone() for audit in new]

        rows = await self._hop(work, doing="claiming a cron schedule in")
        return None if rows is None else [_cron_execution(r) for r in rows]

    async def link_cron_execution(
        self, record_id: uuid.UUID, pipeline_execution_id: uuid.UUID, now: datetime
    ) -> bool:
        """Link an unlinked audit row to its execution; False if already linked."""
        params = {
            "id": record_id.bytes,
            "pipeline_execution_id": pipeline_execution_id.bytes,
            "at": _ts(now),
        }
        changed = await self._hop(
            lambda db: _changed(db, "link_cron_execution", params),
            doing="linking a cron execution in",
        )
        return changed == 1

    async def lost_cron_executions(
        self, stale_before: datetime, limit: int
    ) -> list[LostCronExecution]:
        """Audit rows never linked to an execution (see ``ScheduleStore``)."""
        params = {"stale_before": _ts(stale_before), "limit": limit}
        rows = await self._hop(
            lambda db: db.execute(_Q["lost_cron_executions"], params).fetchall(),
            doing="reading lost cron executions of",
            write=False,
        )
        return [
            LostCronExecution(
                execution=_cron_execution(r[:7]),
                workflow_name=r[7],
                cron_expression=r[8],
                timezone=r[9],
            )
            for r in rows
        ]

    async def reclaim_cron_execution(
        self, record_id: uuid.UUID, seen_updated_at: str, now: datetime
    ) -> bool:
        """Take a lost audit row for recovery (compare-and-set on ``updated_at``)."""
        params = {
            "id": record_id.bytes,
            "seen_updated_at": seen_updated_at,
            "at": _ts(now),
        }
        changed = await self._hop(
            lambda db: _changed(db, "reclaim_cron_execution", params),
            doing="reclaiming a lost cron execution in",
        )
        return changed == 1

    async def existing_executions(
        self, execution_ids: Sequence[uuid.UUID]
    ) -> set[uuid.UUID]:
        """Which of ``execution_ids`` have a ``pipeline_executions`` row."""
        ids = list(execution_ids)

        def work(db: _Db) -> list[uuid.UUID]:
            query = _Q["execution_exists"]
            return [i for i in ids if db.execute(query, {"id": i.bytes}).fetchone()]

        found = await self._hop(work, doing="looking up executions in", write=False)
        return set(found)

    async def list_cron_executions(
        self, schedule_id: uuid.UUID, *, limit: int, offset: int
    ) -> list[CronExecutionRow]:
        """Audit rows of one schedule, newest ``scheduled_time`` first."""
        params = {"schedule_id": schedule_id.bytes, "limit": limit, "offset": offset}
        rows = await self._hop(
            lambda db: db.execute(_Q["list_cron_executions"], params).fetchall(),
            doing="reading cron execution history of",
            write=False,
        )
        return [_cron_execution(r) for r in rows]

    async def cron_execution_stats(
        self, since: datetime, lost_before: datetime
    ) -> CronStats:
        """Counts over audit rows with ``claimed_at >= since``."""
        params = {"since": _ts(since), "lost_before": _ts(lost_before)}
        row = await self._hop(
            lambda db: db.execute(_Q["cron_execution_stats"], params).fetchone(),
            doing="reading cron execution statistics of",
            write=False,
        )
        return CronStats(total=row[0], linked=row[1], lost=row[2])

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
        params = {
            "id": schedule_id.bytes,
            "trigger_name": trigger_name,
            "workflow_name": workflow_name,
            "poll_interval_ms": poll_interval_ms,
            "allow_concurrent": int(allow_concurrent),
            "at": _ts(now),
        }
        await self._hop(
            lambda db: _changed(db, "upsert_trigger_schedule", params),
            doing="registering a trigger schedule in",
        )

    async def list_trigger_schedules(
        self, *, enabled_only: bool, limit: int, offset: int
    ) -> list[TriggerScheduleRow]:
        """Trigger schedules, newest first."""
        params = {"enabled_only": int(enabled_only), "limit": limit, "offset": offset}
        rows = await self._hop(
            lambda db: db.execute(_Q["list_trigger_schedules"], params).fetchall(),
            doing="listing trigger schedules of",
            write=False,
        )
        return [_trigger(r) for r in rows]

    async def get_trigger_schedule(
        self, trigger_name: str
    ) -> TriggerScheduleRow | None:
        """One trigger schedule, or None."""
        params = {"trigger_name": trigger_name}
        row = await self._hop(
            lambda db: db.execute(_Q["get_trigger_schedule"], params).fetchone(),
            doing="reading a trigger schedule of",
            write=False,
        )
        return None if row is None else _trigger(row)

    async def set_trigger_enabled(
        self, trigger_name: str, enabled: bool, now: datetime
    ) -> bool:
        """Enable or disable polling; False if no such row."""
        params = {"trigger_name": trigger_name, "enabled": int(enabled), "at": _ts(now)}
        changed = await self._hop(
            lambda db: _changed(db, "set_trigger_enabled", params),
            doing="enabling or disabling a trigger in",
        )
        return changed == 1

    async def record_trigger_poll(self, trigger_name: str, now: datetime) -> None:
        """Set ``last_poll_at`` after a successful poll."""
        params = {"trigger_name": trigger_name, "at": _ts(now)}
        await self._hop(
            lambda db: _changed(db, "record_trigger_poll", params),
            doing="recording a trigger poll in",
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
        params = {
            "id": record_id.bytes,
            "trigger_name": trigger_name,
            "context_hash": context_hash,
            "at": _ts(now),
        }
        changed = await self._hop(
            lambda db: _changed(db, "insert_trigger_execution", params),
            doing="recording a trigger fire in",
        )
        return changed == 1

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
        params = {
            "id": record_id.bytes,
            "trigger_name": trigger_name,
            "context_hash": context_hash,
            "pipeline_execution_id": pipeline_execution_id.bytes,
            "started_at": _ts(started_at),
            "at": _ts(now),
        }
        await self._hop(
            lambda db: _changed(db, "insert_completed_trigger_execution", params),
            doing="recording a trigger fire in",
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
        params = {
            "id": record_id.bytes,
            "pipeline_execution_id": None
            if pipeline_execution_id is None
            else pipeline_execution_id.bytes,
            "completed": int(completed),
            "at": _ts(now),
        }
        await self._hop(
            lambda db: _changed(db, "link_trigger_execution", params),
            doing="linking a trigger fire in",
        )

    async def complete_trigger_executions(
        self, pipeline_execution_id: uuid.UUID, now: datetime
    ) -> int:
        """Mark the fires linked to a finished execution completed."""
        params = {"pipeline_execution_id": pipeline_execution_id.bytes, "at": _ts(now)}
        return await self._hop(
            lambda db: _changed(db, "complete_trigger_executions", params),
            doing="completing a trigger fire in",
        )

    async def sweep_trigger_executions(
        self, unlinked_before: datetime, now: datetime
    ) -> int:
        """Complete in-progress fires that will never complete otherwise."""
        params = {"unlinked_before": _ts(unlinked_before), "at": _ts(now)}
        return await self._hop(
            lambda db: _changed(db, "sweep_trigger_executions", params),
            doing="completing finished trigger fires in",
        )

    async def list_trigger_executions(
        self, trigger_name: str, *, limit: int, offset: int
    ) -> list[TriggerExecutionRow]:
        """Fires of one trigger, newest first."""
        params = {"trigger_name": trigger_name, "limit": limit, "offset": offset}
        rows = await self._hop(
            lambda db: db.execute(_Q["list_trigger_executions"], params).fetchall(),
            doing="reading trigger execution history of",
            write=False,
        )
        return [_fire(r) for r in rows]
