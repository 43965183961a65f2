"""Clocks: ManualClock, SystemClock and deadline scopes on each kind of clock."""

from __future__ import annotations

import math
import time

import anyio
import pytest

from actors import Clock, ManualClock, SystemClock, deadline_scope

pytestmark = pytest.mark.anyio


class DelegatingClock:
    """A Clock that is neither SystemClock nor ManualClock (the generic path)."""

    def __init__(self, inner: ManualClock) -> None:
        self.inner = inner

    def monotonic(self) -> float:
        return self.inner.monotonic()

    def wall_ms(self) -> int:
        return self.inner.wall_ms()

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)

    async def sleep_until(self, deadline: float) -> None:
        await self.inner.sleep_until(deadline)


def test_clocks_satisfy_the_protocol() -> None:
    assert isinstance(SystemClock(), Clock)
    assert isinstance(ManualClock(), Clock)
    assert isinstance(DelegatingClock(ManualClock()), Clock)


def test_manual_clock_time_moves_only_when_advanced() -> None:
    clock = ManualClock(start=10.0, wall_ms=1_000)
    assert (clock.monotonic(), clock.wall_ms()) == (10.0, 1_000)
    clock.advance(1.5)
    assert (clock.monotonic(), clock.wall_ms()) == (11.5, 2_500)
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(ValueError):
            clock.advance(bad)


async def test_manual_sleepers_wake_in_deadline_order() -> None:
    clock = ManualClock()
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper, "late", 2.0)
            tg.start_soon(sleeper, "early", 1.0)
            await anyio.wait_all_tasks_blocked()
            assert clock.pending_sleepers() == 2
            assert clock.next_deadline() == 1.0
            clock.advance(0.5)
            await anyio.wait_all_tasks_blocked()
            assert woke == []
            clock.advance(0.5)
            await anyio.wait_all_tasks_blocked()
            assert woke == ["early"]
            assert clock.pending_sleepers() == 1
            clock.advance(5.0)
    assert woke == ["early", "late"]
    assert clock.pending_sleepers() == 0
    assert clock.next_deadline() is None


async def test_cancelled_sleeper_is_forgotten() -> None:
    clock = ManualClock()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(clock.sleep, 3.0)
            await anyio.wait_all_tasks_blocked()
            assert clock.pending_sleepers() == 1
            tg.cancel_scope.cancel()
    assert clock.pending_sleepers() == 0
    await clock.sleep(0)  # a past deadline only checkpoints


async def test_autojump_runs_sleeps_in_virtual_time() -> None:
    clock = ManualClock()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(clock.autojump)
            await clock.sleep(3600.0)
            await clock.sleep_until(7200.0)
            tg.cancel_scope.cancel()
    assert clock.monotonic() == 7200.0


@pytest.mark.parametrize("kind", ["manual", "generic"])
async def test_deadline_scope_expires_on_its_clock(kind: str) -> None:
    manual = ManualClock()
    clock: Clock = manual if kind == "manual" else DelegatingClock(manual)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            results: list[bool] = []

            async def wait() -> None:
                async with deadline_scope(clock, 4.0) as scope:
                    await anyio.sleep_forever()
                results.append(scope.cancelled_caught)

            tg.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            manual.advance(3.75)
            await anyio.wait_all_tasks_blocked()
            assert results == []
            manual.advance(0.25)
    assert results == [True]
    assert manual.pending_sleepers() == 0


@pytest.mark.parametrize("kind", ["system", "manual", "generic"])
async def test_deadline_scope_that_does_not_expire(kind: str) -> None:
    manual = ManualClock()
    clocks: dict[str, Clock] = {
        "system": SystemClock(),
        "manual": manual,
        "generic": DelegatingClock(manual),
    }
    clock = clocks[kind]
    async with deadline_scope(clock, clock.monotonic() + 1000.0) as scope:
        await anyio.lowlevel.checkpoint()
    assert not scope.cancelled_caught
    async with deadline_scope(clock, math.inf) as scope:
        await anyio.lowlevel.checkpoint()
    assert not scope.cancelled_caught
    assert manual.pending_sleepers() == 0


async def test_deadline_scope_on_the_system_clock_in_the_past() -> None:
    clock = SystemClock()
    async with deadline_scope(clock, clock.monotonic() - 1.0) as scope:
        await anyio.sleep_forever()
    assert scope.cancelled_caught


async def test_shielded_deadline_scope_ignores_outer_cancellation() -> None:
    clock = ManualClock()
    finished: list[str] = []
    with anyio.CancelScope() as outer:
        outer.cancel()
        async with deadline_scope(clock, 1.0, shield=True):
            await anyio.lowlevel.checkpoint()
            finished.append("shielded work")
    assert finished == ["shielded work"]


async def test_system_clock_reads_the_event_loop_and_the_wall() -> None:
    clock = SystemClock()
    assert clock.monotonic() == pytest.approx(anyio.current_time(), abs=1.0)
    assert abs(clock.wall_ms() - time.time() * 1000) < 60_000
    await clock.sleep(0)
    await clock.sleep_until(clock.monotonic())
