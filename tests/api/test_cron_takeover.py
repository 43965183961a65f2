"""Cron schedules of the Cloacina 0.3.1 fixtures: listed as stored, and they keep firing.

The runtime runs on a manual clock set just after the fixture run (2026-12-03
20:30 UTC), so only the schedule the test re-enables is due.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

import cloaca
from actors import ManualClock
from cloaca.config import RunnerSettings
from cloaca.runtime.engine import Runtime
from cloaca.runtime.outcome import ExecutionOutcome
from cloaca.runtime.schedules import Schedules

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
AFTER_RUN = datetime(2026, 12, 3, 20, 30, tzinfo=UTC)


class Taken:
    def __init__(self, url: str, schema: str | None, manifest: dict[str, Any]) -> None:
        self.url = url
        self.schema = schema
        self.manifest = manifest


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def taken(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Taken]:
    if request.param == "sqlite":
        db = tmp_path / "taken-over.sqlite"
        shutil.copyfile(FIXTURES / "cloacina-0.3.1.sqlite", db)
        manifest = json.loads((FIXTURES / "cloacina-0.3.1-sqlite.json").read_text())
        yield Taken("sqlite://" + str(db), None, manifest)
        return
    from tests.storage import pg_support

    schema = pg_support.new_schema_name("fx")
    await pg_support.load_fixture(schema)
    manifest = json.loads((FIXTURES / "cloacina-0.3.1-postgres.json").read_text())
    try:
        yield Taken(pg_support.URL, schema, manifest)
    finally:
        await pg_support.drop_postgres_schema(schema)


def open_runtime(taken: Taken, clock: ManualClock) -> Runtime:
    return Runtime(taken.url, RunnerSettings(), schema=taken.schema, clock=clock)


def schedules_of(rt: Runtime) -> Schedules:
    assert rt.schedules is not None
    return rt.schedules


async def test_schedules_and_history_are_listed_as_stored(taken: Taken) -> None:
    api = taken.manifest["api"]
    clock = ManualClock(wall_ms=int(AFTER_RUN.timestamp() * 1000))
    async with open_runtime(taken, clock) as rt:
        schedules = schedules_of(rt)
        assert (
            await schedules.list_cron_schedules(False, 100, 0)
            == api["list_cron_schedules"]
        )
        for schedule_id, history in api["cron_history"].items():
            assert (
                await schedules.get_cron_execution_history(schedule_id, 100, 0)
                == history
            )
            expected = next(
                s for s in api["list_cron_schedules"] if s["id"] == schedule_id
            )
            assert await schedules.get_cron_schedule(schedule_id) == expected
        assert (
            await schedules.list_trigger_schedules(False, 100, 0)
            == api["list_trigger_schedules"]
        )
        assert await schedules.get_trigger_schedule("fx_never_fires") is None
        stats = await schedules.get_cron_execution_stats("2026-12-01T00:00:00+00:00")
        fired = len(taken.manifest["cron_executions"])
        assert stats == {
            "total_executions": fired,
            "successful_executions": fired,
            "lost_executions": 0,
            "success_rate": 100.0,
        }


async def test_a_taken_over_schedule_keeps_firing(taken: Taken, tmp_path: Path) -> None:
    with cloaca.WorkflowBuilder("fx_cron_target"):

        @cloaca.task(id="tick")
        def tick(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("ticked_for", ctx.get("scheduled_time"))
            return ctx

    target = next(
        s
        for s in taken.manifest["api"]["list_cron_schedules"]
        if s["workflow_name"] == "fx_cron_target"
    )
    stored_tick = target["next_run_at"]
    clock = ManualClock(wall_ms=int(AFTER_RUN.timestamp() * 1000))
    outcomes: list[ExecutionOutcome] = []
    async with open_runtime(taken, clock) as rt:
        rt.add_finish_listener(outcomes.append)
        schedules = schedules_of(rt)
        stats = schedules.cron_stats
        # Re-enabled after downtime: one run for the stored tick (skip), then the
        # */2-second cadence from now on.
        await schedules.set_cron_schedule_enabled(target["id"], True)
        with anyio.fail_after(10):
            await stats.wait_for(lambda: stats.fired >= 1)
            clock.advance(2)
            await stats.wait_for(lambda: stats.fired >= 2)
        history = await schedules.get_cron_execution_history(target["id"], 100, 0)
        new = history[: len(history) - len(taken.manifest["cron_executions"])]
        assert [h["scheduled_time"] for h in new] == [
            "2026-12-03T20:30:02+00:00",
            stored_tick,
        ]
        assert (
            history[len(new) :] == taken.manifest["api"]["cron_history"][target["id"]]
        )
        assert all(h["pipeline_execution_id"] for h in new)
        schedule = await schedules.get_cron_schedule(target["id"])
        assert schedule["next_run_at"] == "2026-12-03T20:30:04+00:00"
        assert schedule["enabled"] is True
        execution = await rt.store.get_execution(
            uuid.UUID(new[1]["pipeline_execution_id"])
        )
        assert execution is not None
        assert execution.pipeline_name == "fx_cron_target"
    if taken.schema is None:
        # SCHEMA.md 6: ticks without a fraction, ids as 16-byte blobs.
        path = taken.url.removeprefix("sqlite://")
        with sqlite3.connect(path) as conn:
            rows = conn.execute(
                "SELECT typeof(id), scheduled_time, claimed_at, typeof(pipeline_execution_id)"
                " FROM cron_executions ORDER BY scheduled_time"
            ).fetchall()
        assert [r[1] for r in rows][-2:] == [
            "2026-12-03T20:26:42+00:00",
            "2026-12-03T20:30:02+00:00",
        ]
        assert all(r[0] == "blob" and r[3] == "blob" for r in rows)
        assert all(r[2].endswith("+00:00") and "T" in r[2] for r in rows)
