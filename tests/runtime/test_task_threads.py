"""``TaskThreads``: the worker threads that run sync task bodies."""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from cloaca.runtime.attempt import TaskSlots
from cloaca.runtime.task_threads import TIMED_OUT, TaskThreads, cpu_budget

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


# -- the budget of CPU-bound bodies (asyncio: the threads' own path) -----------

asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])


def burn(seconds: float) -> None:
    """Pure-Python CPU work for about ``seconds`` of this thread's CPU time."""
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        pass


async def learn_cpu_bound(threads: TaskThreads, key: str) -> None:
    # A new task is not taken for CPU-bound on one body's evidence.
    await threads.run(burn, 0.01, key=key)
    assert not threads.is_cpu_bound(key)
    await threads.run(burn, 0.01, key=key)
    assert threads.is_cpu_bound(key)


class Overlap:
    """Counts the bodies running at once (from the worker threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.threads: set[int] = set()

    def body(self, seconds: float) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.threads.add(threading.get_ident())
        burn(seconds)
        with self._lock:
            self.now -= 1


@asyncio_only
async def test_cpu_bound_bodies_beyond_the_budget_wait_and_share_a_thread() -> None:
    threads = TaskThreads(budget=1, long_after=30.0)
    try:
        await learn_cpu_bound(threads, "crunch")
        overlap = Overlap()
        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(
                    functools.partial(threads.run, key="crunch"), overlap.body, 0.002
                )
        assert overlap.most == 1
        # The worker took each queued body as it finished the last: one thread.
        assert len(overlap.threads) == 1
    finally:
        threads.close()


@asyncio_only
async def test_bodies_that_wait_never_queue() -> None:
    threads = TaskThreads(budget=1, long_after=30.0)
    try:
        for _ in range(3):  # unknown at first, then known to wait
            # Each body sleeps, then waits for all four: they must run at once.
            barrier = threading.Barrier(4)

            def nap_then_meet(barrier: threading.Barrier = barrier) -> None:
                time.sleep(0.02)
                barrier.wait(timeout=10)

            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(
                        functools.partial(threads.run, key="wait"), nap_then_meet
                    )
            assert not threads.is_cpu_bound("wait")
    finally:
        threads.close()


@asyncio_only
async def test_a_long_body_stops_holding_up_the_queue() -> None:
    threads = TaskThreads(budget=1, long_after=0.05)
    spinning, release = threading.Event(), threading.Event()

    def spin_until_released() -> str:
        spinning.set()
        while not release.is_set():
            pass
        return "released"

    try:
        await learn_cpu_bound(threads, "crunch")
        async with anyio.create_task_group() as tg:
            results: list[str] = []

            async def spin() -> None:
                results.append(await threads.run(spin_until_released, key="crunch"))

            tg.start_soon(spin)
            await anyio.to_thread.run_sync(spinning.wait, 10)
            # Queued behind the spinner; it runs once the spinner has run long.
            with anyio.fail_after(10):
                await threads.run(release.set, key="crunch")
        assert results == ["released"]
    finally:
        threads.close()


@asyncio_only
async def test_a_body_whose_time_limit_passes_in_the_queue_never_starts() -> None:
    threads = TaskThreads(budget=1, long_after=30.0)
    release = threading.Event()
    ran: list[str] = []

    def hold() -> None:
        release.wait(timeout=10)
        burn(0.001)

    try:
        await learn_cpu_bound(threads, "crunch")
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(threads.run, key="crunch"), hold)
            await anyio.wait_all_tasks_blocked()
            late = await threads.run(ran.append, "late", time_limit=0.05, key="crunch")
            assert late is TIMED_OUT
            release.set()
        # Queued after the timed-out one: once it ran, that one was passed over.
        await threads.run(ran.append, "next", key="crunch")
        assert ran == ["next"]
    finally:
        threads.close()


@asyncio_only
async def test_a_result_is_not_held_behind_a_body_that_hangs() -> None:
    threads = TaskThreads(budget=1, long_after=30.0)
    release = threading.Event()

    def hang() -> None:
        release.wait(timeout=10)

    try:
        await learn_cpu_bound(threads, "quick")
        for _ in range(4):  # its bodies are short now, and known so
            await threads.run(burn, 0.001, key="quick")
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(threads.run, key="quick"), hang)
            with anyio.fail_after(5):
                # Queued behind the short body just started: its result comes
                # back although the body after it (the hang) does not end.
                first = await threads.run(burn, 0.001, key="quick")
            release.set()
        assert first is None
    finally:
        release.set()
        threads.close()


async def run_for(
    threads: TaskThreads, key: str, body: Any, seconds: float, lanes: int = 4
) -> None:
    """Keep ``lanes`` calls of ``body`` going for about ``seconds``."""
    until = time.monotonic() + seconds

    async def lane() -> None:
        while time.monotonic() < until:
            await threads.run(body, key=key)

    async with anyio.create_task_group() as tg:
        for _ in range(lanes):
            tg.start_soon(lane)


needs_two_cpus = pytest.mark.skipif(cpu_budget() < 2, reason="needs two CPUs")


@asyncio_only
@needs_two_cpus
async def test_pure_python_bodies_come_to_run_one_at_a_time() -> None:
    threads = TaskThreads(budget=2, long_after=30.0)
    try:
        await learn_cpu_bound(threads, "crunch")
        # A few windows of two at once show the process using one CPU's worth.
        await run_for(threads, "crunch", functools.partial(burn, 0.002), 0.2)
        overlap = Overlap()
        await run_for(threads, "crunch", functools.partial(overlap.body, 0.002), 0.1)
        assert overlap.most == 1
    finally:
        threads.close()


@asyncio_only
@needs_two_cpus
async def test_bodies_that_release_the_gil_keep_running_in_parallel() -> None:
    threads = TaskThreads(budget=2, long_after=30.0)
    data = b"x" * (4 << 20)
    overlap = Overlap()

    def digest() -> None:
        with overlap._lock:
            overlap.now += 1
            overlap.most = max(overlap.most, overlap.now)
        hashlib.sha256(data).digest()  # releases the GIL while it hashes
        with overlap._lock:
            overlap.now -= 1

    try:
        await learn_cpu_bound(threads, "hash")
        await run_for(threads, "hash", digest, 0.2)
        overlap.most = 0
        await run_for(threads, "hash", digest, 0.1)
        assert overlap.most == 2
    finally:
        threads.close()


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
