"""Injectable time: the `Clock` protocol, `SystemClock`, `ManualClock`, deadlines.

Everything in the toolkit that depends on time (restart delays, intensity windows, ask
timeouts, shutdown deadlines) reads a `Clock`, so tests can drive time by hand with
`ManualClock` instead of sleeping. `deadline_scope` is the one place that turns a
deadline on a clock into a cancel scope: natively for `SystemClock` (anyio's own
deadline), through a registered timer for `ManualClock`, and through a helper task for
any other clock.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, runtime_checkable

import anyio
from anyio.abc import TaskGroup
from anyio.lowlevel import checkpoint

__all__ = ("Clock", "ManualClock", "SystemClock", "deadline_scope")


@runtime_checkable
class Clock(Protocol):
    """A source of time for the toolkit."""

    def monotonic(self) -> float:
        """Return the current monotonic time, in seconds."""
        ...

    def wall_ms(self) -> int:
        """Return the current wall-clock time as UTC epoch milliseconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` on this clock."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until ``monotonic()`` reaches ``deadline``."""
        ...


class SystemClock:
    """The real clock: anyio's event-loop time and `time.time`.

    Under trio's ``MockClock`` (passed through anyio's backend options) `monotonic` and
    the sleeps follow the mock, which is what the autojump test lane relies on.
    """

    __slots__ = ()

    def monotonic(self) -> float:
        """Return the event loop's monotonic time, in seconds."""
        return anyio.current_time()

    def wall_ms(self) -> int:
        """Return the current UTC time in epoch milliseconds."""
        return time.time_ns() // 1_000_000

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds``."""
        await anyio.sleep(seconds)

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until the event loop's clock reaches ``deadline``."""
        await anyio.sleep_until(deadline)

    def __repr__(self) -> str:
        return "SystemClock()"


class _Timer:
    """One registered wake-up of a `ManualClock`."""

    __slots__ = ("_clock", "callback", "deadline", "done")

    def __init__(
        self, clock: ManualClock, deadline: float, callback: Callable[[], object]
    ) -> None:
        self._clock = clock
        self.deadline = deadline
        self.callback = callback
        self.done = False

    def __lt__(self, other: _Timer) -> bool:
        return self.deadline < other.deadline

    def cancel(self) -> None:
        """Forget this timer; its callback will not run."""
        if not self.done:
            self.done = True
            self._clock._live -= 1


class ManualClock:
    """A clock that moves only when told to.

    Monotonic time starts at ``start``; wall time starts at ``wall_ms`` and moves with
    it. Sleepers and deadlines registered on the clock wake when `advance` (or
    `autojump`) moves time past their deadline. Use it in tests to exercise backoff,
    intensity windows and timeouts without real waiting.

    Args:
        start: Initial monotonic time, in seconds.
        wall_ms: Initial wall-clock time, in UTC epoch milliseconds.
    """

    def __init__(self, start: float = 0.0, wall_ms: int = 1_700_000_000_000) -> None:
        self._start = start
        self._now = start
        self._wall0 = wall_ms
        self._heap: list[_Timer] = []
        self._live = 0
        self._order = itertools.count()
        self._changed: anyio.Event | None = None

    def monotonic(self) -> float:
        """Return the clock's monotonic time, in seconds."""
        return self._now

    def wall_ms(self) -> int:
        """Return the clock's wall time, in UTC epoch milliseconds."""
        return self._wall0 + round((self._now - self._start) * 1000)

    async def sleep(self, seconds: float) -> None:
        """Sleep until the clock has advanced by ``seconds``."""
        await self.sleep_until(self._now + seconds)

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until the clock reaches ``deadline`` (a past one only checkpoints)."""
        if deadline <= self._now:
            await checkpoint()
            return
        event = anyio.Event()
        timer = self.call_at(deadline, event.set)
        try:
            await event.wait()
        finally:
            timer.cancel()

    def call_at(self, deadline: float, callback: Callable[[], object]) -> _Timer:
        """Run ``callback`` (synchronously) once the clock reaches ``deadline``.

        Args:
            deadline: Monotonic time at which to fire.
            callback: A non-blocking callable.

        Returns:
            A timer whose ``cancel()`` withdraws the callback.
        """
        timer = _Timer(self, deadline, callback)
        self._live += 1
        if deadline <= self._now:
            self._fire(timer)
            return timer
        heapq.heappush(self._heap, timer)
        if self._changed is not None:
            self._changed.set()
        return timer

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has passed.

        Args:
            seconds: How far to move, in seconds; must not be negative.

        Raises:
            ValueError: If ``seconds`` is negative or not finite.
        """
        if not seconds >= 0 or math.isinf(seconds):
            raise ValueError(f"cannot advance a clock by {seconds!r} seconds")
        self._now += seconds
        heap = self._heap
        while heap and heap[0].deadline <= self._now:
            timer = heapq.heappop(heap)
            if not timer.done:
                self._fire(timer)

    def _fire(self, timer: _Timer) -> None:
        timer.done = True
        self._live -= 1
        timer.callback()

    def pending_sleepers(self) -> int:
        """Return how many sleeps and deadlines are waiting on this clock."""
        return self._live

    def next_deadline(self) -> float | None:
        """Return the earliest pending deadline, or None when nothing waits."""
        heap = self._heap
        while heap and heap[0].done:
            heapq.heappop(heap)
        return heap[0].deadline if heap else None

    async def autojump(self) -> None:
        """Jump to the next deadline whenever every other task is blocked; runs forever.

        Start it in a task group next to the code under test and cancel it afterwards.
        """
        while True:
            await anyio.wait_all_tasks_blocked()
            deadline = self.next_deadline()
            if deadline is None:
                self._changed = anyio.Event()
                await self._changed.wait()
                self._changed = None
                continue
            self.advance(max(0.0, deadline - self._now))

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now!r}, pending={self._live})"


class deadline_scope:
    """An async context manager: a cancel scope that expires at a deadline on a `Clock`.

    After the block, ``scope.cancelled_caught`` tells whether the deadline cut it short.

    Args:
        clock: The clock the deadline is measured on.
        deadline: Monotonic time (on ``clock``) at which to cancel; ``math.inf``: never.
        shield: Shield the block from outer cancellation (for bounded cleanup).
    """

    __slots__ = ("_clock", "_deadline", "_tg", "_timer", "scope")

    def __init__(self, clock: Clock, deadline: float, *, shield: bool = False) -> None:
        self._clock = clock
        self._deadline = deadline
        self._timer: _Timer | None = None
        self._tg: TaskGroup | None = None
        self.scope = anyio.CancelScope(shield=shield)

    async def __aenter__(self) -> anyio.CancelScope:
        clock, deadline, scope = self._clock, self._deadline, self.scope
        if deadline == math.inf:
            pass
        elif type(clock) is SystemClock:
            scope.deadline = deadline
        elif isinstance(clock, ManualClock):
            self._timer = clock.call_at(deadline, scope.cancel)
        else:
            # An arbitrary clock can only wake us from a task that sleeps on it.
            self._tg = anyio.create_task_group()
            await self._tg.__aenter__()
            self._tg.start_soon(self._expire, clock, deadline, scope)
        return scope.__enter__()

    @staticmethod
    async def _expire(clock: Clock, deadline: float, scope: anyio.CancelScope) -> None:
        await clock.sleep_until(deadline)
        scope.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        suppress = bool(self.scope.__exit__(exc_type, exc, tb))
        if self._timer is not None:
            self._timer.cancel()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
            # The helper task is ours and is cancelled; handing the block's exception to
            # the group would only wrap it in an ExceptionGroup, so let it propagate as
            # is.
            await self._tg.__aexit__(None, None, None)
        return suppress
