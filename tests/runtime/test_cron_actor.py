"""The cron actor on a manual clock: exact ticks, DST, catch-up, recovery (API.md 4.12)."""

from __future__ import annotations

import functools
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

import cloaca
from actors import ManualClock
from cloaca.config import RunnerSettings
from cloaca.runtime.cron_actor import cron_execution_id
from cloaca.runtime.engine import Runtime
from cloaca.runtime.outcome import ExecutionOutcome
from cloaca.runtime.schedules import Schedules
from cloaca.storage.protocol import ScheduleStore

pytestmark = pytest.mark.anyio


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def define_target() -> None:
    with cloaca.WorkflowBuilder("cron_target"):

        @cloaca.task(id="tick")
        async def tick(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("ticked_for", ctx.get("scheduled_time"))
            return ctx


class Finished:
    """Collects the outcomes of finished executions; waits for a count."""

    def __init__(self) -> None:
        self.outcomes: list[ExecutionOutcome] = []
        self._changed = anyio.Event()

    def __call__(self, outcome: ExecutionOutcome) -> None:
        self.outcomes.append(outcome)
        self._changed.set()

    async def wait(self, count: int) -> None:
        with anyio.fail_after(10):
            while len(self.outcomes) < count:
                self._changed = anyio.Event()
                await self._changed.wait()


@asynccontextmanager
async def runtime(
    url: str, clock: ManualClock, **settings: Any
) -> AsyncIterator[tuple[Runtime, Schedules, Finished]]:
    rt = Runtime(url, RunnerSettings(**settings), clock=clock)
    finished = Finished()
    async with rt:
        rt.add_finish_listener(finished)
        assert rt.schedules is not None
        yield rt, rt.schedules, finished


async def wait_for(schedules: Schedules, condition: Callable[[], bool]) -> None:
    with anyio.fail_after(10):
        await schedules.cron_stats.wait_for(condition)


def _reached(stats: object, counter: str, value: int) -> bool:
    return bool(getattr(stats, counter) >= value)


def store_of(rt: Runtime) -> ScheduleStore:
    store: Any = rt.store
    return store  # type: ignore[no-any-return]


@pytest.fixture
def url(tmp_path: Path) -> str:
    return "sqlite://" + str(tmp_path / "cron.db")


async def test_a_day_of_quarter_hour_ticks_across_a_dst_change(url: str) -> None:
    define_target()
    # America/New_York falls back on 2026-11-01 at 06:00 UTC (02:00 EDT).
    start = datetime(2026, 10, 31, 23, 0, 30, tzinfo=UTC)
    clock = ManualClock(wall_ms=ms(start))
    async with runtime(url, clock) as (_, schedules, finished):
        every = await schedules.register_cron_workflow(
            "cron_target", "*/15 * * * *", "America/New_York"
        )
        daily = await schedules.register_cron_workflow(
            "cron_target", "30 1 * * *", "America/New_York"
        )
        stats = schedules.cron_stats
        first = datetime(2026, 10, 31, 23, 15, tzinfo=UTC)
        quarter = [first + timedelta(minutes=15 * i) for i in range(24 * 4)]
        repeated = [
            datetime(2026, 11, 1, 5, 30, tzinfo=UTC),  # 01:30 EDT
            datetime(2026, 11, 1, 6, 30, tzinfo=UTC),  # 01:30 EST, the repeat
        ]
        for step in range(1, 24 * 4 + 1):
            clock.advance(15 * 60)
            now = start + timedelta(minutes=15 * step)
            due = sum(t <= now for t in quarter + repeated)
            await wait_for(schedules, functools.partial(_reached, stats, "fired", due))
        await finished.wait(len(quarter) + len(repeated))
        history = await schedules.get_cron_execution_history(every, 2000, 0)
        ticks = [h["scheduled_time"] for h in reversed(history)]
        assert ticks == [t.isoformat() for t in quarter]
        assert all(h["pipeline_execution_id"] for h in history)
        twice = await schedules.get_cron_execution_history(daily, 100, 0)
        assert [h["scheduled_time"] for h in reversed(twice)] == [
            t.isoformat() for t in repeated
        ]
        seen = {
            json.loads(o.final_context_json)["ticked_for"] for o in finished.outcomes
        }
        assert "2026-11-01T06:30:00+00:00" in seen
        assert all(o.status == "Completed" for o in finished.outcomes)
        origins = {o.origin for o in finished.outcomes}
        assert origins == {f"cron:{every}", f"cron:{daily}"}


async def test_the_input_context_has_exactly_the_four_keys(url: str) -> None:
    define_target()
    clock = ManualClock(wall_ms=ms(datetime(2026, 12, 3, 20, 26, 37, tzinfo=UTC)))
    async with runtime(url, clock) as (rt, schedules, finished):
        sid = await schedules.register_cron_workflow(
            "cron_target", "*/2 * * * * *", "UTC"
        )
        clock.advance(1)
        await finished.wait(1)
        execution_id = finished.outcomes[0].execution_id
        row = await rt.store.get_execution(execution_id)
        assert row is not None
        (history,) = await schedules.get_cron_execution_history(sid, 100, 0)
        assert history["pipeline_execution_id"] == str(execution_id)
        assert history["scheduled_time"] == "2026-12-03T20:26:38+00:00"
        final = json.loads(finished.outcomes[0].final_context_json)
        assert final == {
            "scheduled_time": "2026-12-03T20:26:38+00:00",
            "schedule_id": sid,
            "schedule_timezone": "UTC",
            "schedule_expression": "*/2 * * * * *",
            "ticked_for": "2026-12-03T20:26:38+00:00",
        }
        schedule = await schedules.get_cron_schedule(sid)
        assert schedule["next_run_at"] == "2026-12-03T20:26:40+00:00"
        assert schedule["last_run_at"] is not None


async def test_skip_fires_once_after_downtime_then_keeps_cadence(url: str) -> None:
    define_target()
    t0 = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)
    async with runtime(url, ManualClock(wall_ms=ms(t0))) as (_, schedules, _f):
        sid = await schedules.register_cron_workflow("cron_target", "* * * * *", "UTC")
    # A day of downtime: one run on restart (the stored tick), then every minute.
    later = ManualClock(wall_ms=ms(t0 + timedelta(days=1)))
    async with runtime(url, later) as (_, schedules, finished):
        await finished.wait(1)
        later.advance(30)
        await finished.wait(2)
        history = await schedules.get_cron_execution_history(sid, 100, 0)
        assert [h["scheduled_time"] for h in history] == [
            "2026-06-02T12:01:00+00:00",
            "2026-06-01T12:01:00+00:00",
        ]


async def test_run_all_catches_up_bounded_by_the_setting(
    url: str, tmp_path: Path
) -> None:
    define_target()
    t0 = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)
    async with runtime(url, ManualClock(wall_ms=ms(t0))) as (_, schedules, _f):
        sid = await schedules.register_cron_workflow("cron_target", "0 * * * *", "UTC")
    with sqlite3.connect(tmp_path / "cron.db") as conn:
        # run_all exists only in schedules Cloacina wrote (not settable from Python).
        conn.execute("UPDATE cron_schedules SET catchup_policy = 'run_all'")
    later = ManualClock(wall_ms=ms(t0 + timedelta(hours=10)))
    async with runtime(url, later, cron_max_catchup_executions=4) as (_, s, done):
        await done.wait(4)
        history = await s.get_cron_execution_history(sid, 100, 0)
        assert sorted(h["scheduled_time"] for h in history) == [
            f"2026-06-01T{h}:00:00+00:00" for h in (13, 14, 15, 16)
        ]
        schedule = await s.get_cron_schedule(sid)
        assert schedule["next_run_at"] == "2026-06-01T23:00:00+00:00"


async def test_disabled_schedules_do_not_fire_and_a_reenabled_one_fires_once(
    url: str,
) -> None:
    define_target()
    clock = ManualClock(wall_ms=ms(datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)))
    async with runtime(url, clock) as (_, schedules, finished):
        sid = await schedules.register_cron_workflow("cron_target", "* * * * *", "UTC")
        await schedules.set_cron_schedule_enabled(sid, False)
        polls = schedules.cron_stats.polls
        clock.advance(600)
        await wait_for(schedules, lambda: schedules.cron_stats.polls > polls)
        assert await schedules.get_cron_execution_history(sid, 100, 0) == []
        await schedules.set_cron_schedule_enabled(sid, True)
        await finished.wait(1)
        (fired,) = await schedules.get_cron_execution_history(sid, 100, 0)
        assert fired["scheduled_time"] == "2026-06-01T12:01:00+00:00"


async def test_cron_disabled_runs_no_cron_actor(url: str) -> None:
    clock = ManualClock()
    async with runtime(url, clock, enable_cron_scheduling=False) as (rt, s, _f):
        with pytest.raises(ValueError, match="Cron scheduling not enabled"):
            await s.register_cron_workflow("wf", "* * * * *", "UTC")
        assert rt._system is not None
        ids = [c.id for c in rt._system.root.which_children()]
        assert "cron" not in ids
        assert "triggers" in ids


async def test_a_claim_never_handed_off_is_recovered_once(url: str) -> None:
    define_target()
    t0 = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)
    clock = ManualClock(wall_ms=ms(t0))
    async with runtime(url, clock, cron_enable_recovery=False) as (rt, s, _f):
        sid = await s.register_cron_workflow("cron_target", "0 0 1 1 *", "UTC")
        # A runner that crashed right after its claim committed: the audit row
        # exists, no execution was started.
        (record,) = await _claim(rt, sid, datetime(2026, 6, 1, 12, tzinfo=UTC), t0)
    assert record.pipeline_execution_id is None
    later = ManualClock(wall_ms=ms(t0 + timedelta(minutes=11)))
    async with runtime(url, later) as (rt, s, finished):
        await finished.wait(1)
        await wait_for(s, lambda: s.cron_stats.recovered == 1)
        (history,) = await s.get_cron_execution_history(sid, 100, 0)
        assert history["pipeline_execution_id"] == str(cron_execution_id(record.id))
        final = json.loads(finished.outcomes[0].final_context_json)
        assert final["is_recovery"] is True
        assert final["recovery_attempt"] == 1
        assert final["original_execution_id"] == str(record.id)
        assert final["scheduled_time"] == "2026-06-01T12:00:00+00:00"
        stats = await s.get_cron_execution_stats("2026-01-01T00:00:00+00:00")
        assert stats == {
            "total_executions": 1,
            "successful_executions": 1,
            "lost_executions": 0,
            "success_rate": 100.0,
        }
        # Linked: later passes leave it alone.
        passes = s.cron_stats.recoveries
        later.advance(400)
        await wait_for(s, lambda: s.cron_stats.recoveries > passes)
        assert len(finished.outcomes) == 1
        assert s.cron_stats.recovered == 1


async def test_a_tick_handed_off_but_never_linked_is_linked_not_rerun(
    url: str,
) -> None:
    define_target()
    t0 = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)
    clock = ManualClock(wall_ms=ms(t0))
    async with runtime(url, clock, cron_enable_recovery=False) as (rt, s, finished):
        sid = await s.register_cron_workflow("cron_target", "0 0 1 1 *", "UTC")
        (record,) = await _claim(rt, sid, datetime(2026, 6, 1, 12, tzinfo=UTC), t0)
        # Crash after the execution started, before the link.
        execution_id = cron_execution_id(record.id)
        await rt._scheduler().ask(_start(execution_id, "cron_target"))
        await finished.wait(1)
    later = ManualClock(wall_ms=ms(t0 + timedelta(minutes=11)))
    async with runtime(url, later) as (rt, s, finished):
        await wait_for(s, lambda: s.cron_stats.relinked == 1)
        (history,) = await s.get_cron_execution_history(sid, 100, 0)
        assert history["pipeline_execution_id"] == str(execution_id)
        assert s.cron_stats.recovered == 0
        assert finished.outcomes == []


async def test_recovery_respects_age_attempts_and_unknown_workflows(url: str) -> None:
    t0 = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)
    async with runtime(
        url, ManualClock(wall_ms=ms(t0)), cron_enable_recovery=False
    ) as (
        rt,
        s,
        _f,
    ):
        sid = await s.register_cron_workflow("not_registered", "0 0 1 1 *", "UTC")
        old = await s.register_cron_workflow("not_registered", "0 0 1 1 *", "UTC")
        await _claim(rt, sid, datetime(2026, 6, 1, 12, tzinfo=UTC), t0)
        await _claim(rt, old, datetime(2026, 5, 1, 12, tzinfo=UTC), t0)
    clock = ManualClock(wall_ms=ms(t0 + timedelta(minutes=11)))
    async with runtime(url, clock, cron_max_recovery_attempts=2) as (rt, s, _f):
        # The workflow is unknown: each attempt fails to hand off; two attempts.
        stats = s.cron_stats
        await wait_for(s, lambda: stats.recoveries >= 1)
        for passes in range(2, 6):
            clock.advance(11 * 60)
            await wait_for(s, functools.partial(_reached, stats, "recoveries", passes))
        assert list(s.recovery_attempts.values()) == [2]
        summary = await s.get_cron_execution_stats("2026-01-01T00:00:00Z")
        assert summary["lost_executions"] == 2
        assert summary["success_rate"] == 0.0


async def _claim(
    rt: Runtime, schedule_id: str, tick: datetime, now: datetime
) -> list[Any]:
    store = store_of(rt)
    row = await store.get_cron_schedule(uuid.UUID(schedule_id))
    assert row is not None
    records = await store.claim_cron_ticks(
        row.id,
        seen_next_run_at=row.next_run_at,
        next_run_at=datetime(2027, 1, 1, tzinfo=UTC),
        ticks=[tick],
        now=now,
    )
    assert records is not None
    return records


def _start(execution_id: uuid.UUID, workflow: str) -> Any:
    from cloaca.runtime.messages import StartExecution

    return StartExecution(
        execution_id=execution_id, workflow_name=workflow, context_json="{}"
    )
