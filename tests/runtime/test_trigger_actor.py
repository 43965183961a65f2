"""The trigger poller on a manual clock: polls, fires, de-duplication (API.md 4.13)."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
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
from cloaca.runtime.trigger_actor import context_hash

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 12, 3, 20, 0, tzinfo=UTC)


class Finished:
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
    url: str, clock: ManualClock
) -> AsyncIterator[tuple[Schedules, Finished]]:
    rt = Runtime(url, RunnerSettings(), clock=clock)
    finished = Finished()
    async with rt:
        rt.add_finish_listener(finished)
        assert rt.schedules is not None
        yield rt.schedules, finished


def _reached(stats: object, counter: str, value: int) -> bool:
    return bool(getattr(stats, counter) >= value)


async def until(schedules: Schedules, counter: str, value: int) -> None:
    with anyio.fail_after(10):
        await schedules.trigger_stats.wait_for(
            functools.partial(_reached, schedules.trigger_stats, counter, value)
        )


@pytest.fixture
def url(tmp_path: Path) -> str:
    return "sqlite://" + str(tmp_path / "triggers.db")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(wall_ms=int(T0.timestamp() * 1000))


def define_target(gate: anyio.Event | None = None) -> None:
    with cloaca.WorkflowBuilder("on_event"):

        @cloaca.task(id="handle")
        async def handle(ctx: cloaca.Context) -> cloaca.Context:
            if gate is not None:
                await gate.wait()
            ctx.set("handled", ctx.get("order"))
            return ctx


def scripted(results: list[Callable[[], Any]]) -> Callable[[], Any]:
    """A trigger function returning the next scripted result; the last repeats."""
    calls = {"n": 0}

    def poll() -> Any:
        index = min(calls["n"], len(results) - 1)
        calls["n"] += 1
        return results[index]()

    return poll


async def test_a_registered_trigger_is_stored_polled_and_fires(
    url: str, clock: ManualClock
) -> None:
    define_target()
    fire = functools.partial(cloaca.TriggerResult.fire, cloaca.Context({"order": 7}))
    cloaca.trigger("on_event", name="orders", poll_interval="2s")(
        scripted([fire, cloaca.TriggerResult.skip])
    )
    async with runtime(url, clock) as (schedules, finished):
        await finished.wait(1)
        await until(schedules, "ended", 1)
        schedule = await schedules.get_trigger_schedule("orders")
        assert schedule is not None
        assert schedule["workflow_name"] == "on_event"
        assert schedule["poll_interval_ms"] == 2000
        assert schedule["allow_concurrent"] is False
        assert schedule["enabled"] is True
        assert schedule["last_poll_at"] == "2026-12-03T20:00:00+00:00"
        outcome = finished.outcomes[0]
        assert outcome.origin == "trigger:orders"
        final = json.loads(outcome.final_context_json)
        assert final == {
            "order": 7,
            "trigger_name": "orders",
            "triggered_at": "2026-12-03T20:00:00+00:00",
            "handled": 7,
        }
        (fired,) = await schedules.get_trigger_execution_history("orders", 100, 0)
        assert fired["pipeline_execution_id"] == str(outcome.execution_id)
        assert fired["context_hash"] == context_hash({"order": 7})
        assert fired["completed_at"] is not None
        # Then skips: polled every 2 s, no more fires.
        clock.advance(2)
        await until(schedules, "polls", 2)
        clock.advance(2)
        await until(schedules, "polls", 3)
        assert len(await schedules.get_trigger_execution_history("orders", 100, 0)) == 1


async def test_an_identical_fire_in_progress_is_dropped(
    url: str, clock: ManualClock
) -> None:
    gate = anyio.Event()
    define_target(gate)
    cloaca.trigger("on_event", name="same", poll_interval="1s")(
        lambda: cloaca.TriggerResult.fire()
    )
    async with runtime(url, clock) as (schedules, finished):
        await until(schedules, "fired", 1)
        clock.advance(1)
        await until(schedules, "dropped", 1)
        clock.advance(1)
        await until(schedules, "dropped", 2)
        (running,) = await schedules.get_trigger_execution_history("same", 100, 0)
        assert running["context_hash"] == "fire_no_context"
        assert running["completed_at"] is None
        gate.set()
        await finished.wait(1)
        await until(schedules, "ended", 1)
        clock.advance(1)
        await until(schedules, "fired", 2)
        history = await schedules.get_trigger_execution_history("same", 100, 0)
        assert len(history) == 2
        assert history[1]["completed_at"] is not None
        await finished.wait(2)


async def test_allow_concurrent_runs_identical_fires_side_by_side(
    url: str, clock: ManualClock
) -> None:
    gate = anyio.Event()
    define_target(gate)
    cloaca.trigger("on_event", name="many", poll_interval="1s", allow_concurrent=True)(
        lambda: cloaca.TriggerResult.fire(cloaca.Context({"order": 1}))
    )
    async with runtime(url, clock) as (schedules, finished):
        await until(schedules, "fired", 1)
        clock.advance(1)
        await until(schedules, "fired", 2)
        assert schedules.trigger_stats.dropped == 0
        gate.set()
        await finished.wait(2)
        await until(schedules, "ended", 2)
        history = await schedules.get_trigger_execution_history("many", 100, 0)
        assert len(history) == 2
        assert all(h["completed_at"] is not None for h in history)
        assert {h["pipeline_execution_id"] for h in history} == {
            str(o.execution_id) for o in finished.outcomes[:2]
        }


async def test_disabled_triggers_are_not_polled(url: str, clock: ManualClock) -> None:
    calls: list[int] = []

    def poll() -> cloaca.TriggerResult:
        calls.append(1)
        return cloaca.TriggerResult.skip()

    cloaca.trigger("on_event", name="quiet", poll_interval="1s")(poll)
    async with runtime(url, clock) as (schedules, _):
        await until(schedules, "polls", 1)
        await schedules.set_trigger_enabled("quiet", False)
        await schedules.set_trigger_enabled("unknown", False)
        for _ in range(5):
            clock.advance(1)
        await anyio.wait_all_tasks_blocked()
        assert len(calls) == 1
        schedule = await schedules.get_trigger_schedule("quiet")
        assert schedule is not None
        assert schedule["enabled"] is False
        await schedules.set_trigger_enabled("quiet", True)
        await until(schedules, "polls", 2)
        assert len(calls) == 2


async def test_failing_polls_do_not_fire_and_polling_goes_on(
    url: str, clock: ManualClock
) -> None:
    define_target()

    def boom() -> Any:
        raise RuntimeError("sensor offline")

    cloaca.trigger("on_event", name="flaky", poll_interval="1s")(
        scripted(
            [
                boom,
                lambda: "not a result",
                functools.partial(
                    cloaca.TriggerResult.fire, cloaca.Context({"order": 2})
                ),
            ]
        )
    )
    async with runtime(url, clock) as (schedules, finished):
        await until(schedules, "polls", 1)
        schedule = await schedules.get_trigger_schedule("flaky")
        assert schedule is not None
        assert schedule["last_poll_at"] is None  # only good polls count
        clock.advance(1)
        await until(schedules, "polls", 2)
        assert schedules.trigger_stats.fired == 0
        clock.advance(1)
        await finished.wait(1)
        assert json.loads(finished.outcomes[0].final_context_json)["handled"] == 2


async def test_async_triggers_and_registration_while_running(
    url: str, clock: ManualClock
) -> None:
    define_target()
    async with runtime(url, clock) as (schedules, finished):
        assert await schedules.get_trigger_schedule("later") is None

        async def later() -> cloaca.TriggerResult:
            return cloaca.TriggerResult.fire(cloaca.Context({"order": 3}))

        # Registered from another thread, as a DefaultRunner user would.
        thread = threading.Thread(
            target=cloaca.trigger("on_event", name="later", poll_interval="1m"),
            args=(later,),
        )
        thread.start()
        await anyio.to_thread.run_sync(thread.join)
        await finished.wait(1)
        schedule = await schedules.get_trigger_schedule("later")
        assert schedule is not None
        assert schedule["poll_interval_ms"] == 60_000
        listed = await schedules.list_trigger_schedules(False, 100, 0)
        assert [s["trigger_name"] for s in listed] == ["later"]


async def test_a_stored_trigger_without_a_function_fires_nothing(
    url: str, clock: ManualClock
) -> None:
    define_target()
    cloaca.trigger("on_event", name="gone", poll_interval="1s")(
        lambda: cloaca.TriggerResult.fire()
    )
    async with runtime(url, clock) as (schedules, finished):
        await finished.wait(1)
    from cloaca import registry

    # A new process that does not define the trigger: the row stays, nothing fires.
    registry._triggers.pop("gone")
    async with runtime(url, clock) as (schedules, finished):
        clock.advance(1)
        await anyio.wait_all_tasks_blocked()
        assert await schedules.get_trigger_schedule("gone") is not None
        assert finished.outcomes == []
        assert len(await schedules.get_trigger_execution_history("gone", 100, 0)) == 1
