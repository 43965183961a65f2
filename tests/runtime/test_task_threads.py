"""``TaskThreads``: the worker threads that run sync task bodies."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from cloaca.runtime.attempt import TIMED_OUT, TaskSlots, TaskThreads

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def threads() -> Iterator[TaskThreads]:
    pool = TaskThreads(name="test-task")
    yield pool
    pool.close()


async def test_results_of_calls_finishing_together_reach_their_callers(
    threads: TaskThreads,
) -> None:
    # Every body waits at the barrier, so they finish (and report) together.
    count = 24
    barrier = threading.Barrier(count)
    results: dict[int, Any] = {}

    def body(n: int) -> str:
        barrier.wait(timeout=10)
        return f"result {n}"

    async def call(n: int) -> None:
        results[n] = await threads.run(body, n)

    async with anyio.create_task_group() as tg:
        for n in range(count):
            tg.start_soon(call, n)
    assert results == {n: f"result {n}" for n in range(count)}


async def test_an_exception_of_the_body_reaches_the_caller(
    threads: TaskThreads,
) -> None:
    def body() -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        await threads.run(body)
    assert await threads.run(lambda: 7) == 7


async def test_a_call_past_its_time_limit_is_abandoned(threads: TaskThreads) -> None:
    release = threading.Event()
    finished = threading.Event()

    def stuck() -> str:
        release.wait(timeout=10)
        finished.set()
        return "late"

    assert await threads.run(stuck, time_limit=0.05) is TIMED_OUT
    # The stuck body keeps its thread; the next call gets another one.
    assert await threads.run(lambda: "next", time_limit=5.0) == "next"
    release.set()
    await anyio.to_thread.run_sync(finished.wait, 10)
    # Its late result was discarded; the pool still serves calls.
    assert await threads.run(lambda: "after") == "after"


async def test_cancelling_the_caller_abandons_the_call(threads: TaskThreads) -> None:
    started = threading.Event()
    release = threading.Event()

    def stuck() -> str:
        started.set()
        release.wait(timeout=10)
        return "late"

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def call() -> None:
                await threads.run(stuck)

            tg.start_soon(call)
            await anyio.to_thread.run_sync(started.wait, 10)
            scope.cancel()
    assert scope.cancelled_caught
    release.set()
    assert await threads.run(lambda: "after") == "after"


# -- TaskSlots (max_concurrent_tasks) ------------------------------------------


async def test_slots_admit_up_to_the_limit_then_in_arrival_order() -> None:
    slots = TaskSlots(2)
    order: list[str] = []
    release: dict[str, anyio.Event] = {}

    async def attempt(name: str) -> None:
        async with slots:
            order.append(name)
            release[name] = anyio.Event()
            await release[name].wait()

    async with anyio.create_task_group() as tg:
        for name in ("a", "b", "c", "d"):
            tg.start_soon(attempt, name)
            await anyio.wait_all_tasks_blocked()
        assert order == ["a", "b"]
        assert slots.available_tokens == 0
        assert slots.statistics().tasks_waiting == 2
        release["b"].set()
        await anyio.wait_all_tasks_blocked()
        assert order == ["a", "b", "c"]
        release["a"].set()
        await anyio.wait_all_tasks_blocked()
        assert order == ["a", "b", "c", "d"]
        release["c"].set()
        release["d"].set()
    assert slots.available_tokens == 2


async def test_a_cancelled_wait_for_a_slot_leaves_no_trace() -> None:
    slots = TaskSlots(1)
    slots.acquire_on_behalf_of_nowait("holder")
    async with anyio.create_task_group() as tg:
        tg.start_soon(slots.acquire_on_behalf_of, "waiter")
        await anyio.wait_all_tasks_blocked()
        assert slots.statistics().tasks_waiting == 1
        tg.cancel_scope.cancel()
    assert slots.statistics().tasks_waiting == 0
    slots.release_on_behalf_of("holder")
    assert slots.available_tokens == 1
    await slots.acquire_on_behalf_of("next")
    assert slots.borrowed_tokens == 1


async def test_divert_ends_the_longest_divertible_waits_and_keeps_the_rest() -> None:
    slots = TaskSlots(1)
    slots.acquire_on_behalf_of_nowait("holder")
    answers: dict[str, bool] = {}

    async def divertible(name: str) -> None:
        answers[name] = await slots.acquire_unless_diverted(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(divertible, "first")
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(slots.acquire_on_behalf_of, "plain")
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(divertible, "second")
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(divertible, "third")
        await anyio.wait_all_tasks_blocked()
        # Two asked for: the two longest divertible waiters, not "plain".
        assert slots.divert(2) == 2
        await anyio.wait_all_tasks_blocked()
        assert answers == {"first": False, "second": False}
        assert slots.statistics().tasks_waiting == 2
        # The rest keep their order: "plain" before "third".
        slots.release_on_behalf_of("holder")
        await anyio.wait_all_tasks_blocked()
        assert slots.statistics().borrowers == ("plain",)
        slots.release_on_behalf_of("plain")
    assert answers == {"first": False, "second": False, "third": True}
    assert slots.statistics().borrowers == ("third",)
    assert slots.divert(1) == 0


async def test_acquire_unless_diverted_takes_a_free_slot_at_once() -> None:
    slots = TaskSlots(1)
    assert await slots.acquire_unless_diverted("a") is True
    assert slots.statistics().borrowers == ("a",)


async def test_slots_refuse_misuse() -> None:
    slots = TaskSlots(1)
    slots.acquire_on_behalf_of_nowait("x")
    with pytest.raises(RuntimeError, match="already holding"):
        slots.acquire_on_behalf_of_nowait("x")
    with pytest.raises(anyio.WouldBlock):
        slots.acquire_on_behalf_of_nowait("y")
    with pytest.raises(RuntimeError, match="isn't holding"):
        slots.release_on_behalf_of("y")
    with pytest.raises(TypeError, match=r"int or math\.inf"):
        TaskSlots(1.5)
    with pytest.raises(ValueError, match=">= 0"):
        TaskSlots(-1)
