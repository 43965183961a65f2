"""Worker threads for the bodies of sync tasks, within a budget for CPU-bound ones.

A sync task body runs in a worker thread so that it may block (sleep, I/O, a
lock) without stopping the event loop. But pure-Python code holds the GIL while
it runs: thirty-two CPU-bound bodies in thirty-two threads run no faster than one
after another, and the GIL hands itself from thread to thread every switch
interval. Every hand-off wakes a thread. On a machine whose cores are all busy
(two runner processes and PostgreSQL on two cores) the woken thread often waits
behind another process while the core that handed off sits idle: measured, a
quarter of the machine went idle that way.

So bodies of tasks found CPU-bound run within a budget; the rest queue, and a
worker that finishes one takes the next at once, without going to sleep and
being woken (it lets a loop that waits for the GIL have it in between). The
budget is the CPUs this process may use while the bodies run native code that
releases the GIL (the process then uses more than one CPU's worth of time), and
one body (beside the loop) while they are pure Python (with the ``cpu``
benchmark's 2 ms bodies, sixteen at once per process gave about 460 executions/s
in one process and 690 in two; one at a time, 550 and 900). Which of the two
holds is measured over windows of ``WINDOW`` seconds, and while bodies run one
at a time, every ``PROBE_EVERY`` seconds one window runs them with the whole
budget again. A task is CPU-bound when its recent bodies were on the CPU, on
average, for at least 30% of their fair share of the GIL (their time divided
among the bodies running meanwhile and the loop). A body that sleeps or waits on
I/O is on the CPU for a hundredth of its time or less, so such a task is not
mistaken for CPU-bound; a CPU-bound task mistaken for one that waits (its
process was kept off the CPU) only runs unqueued, as every body did before.
Bodies of other tasks, and the first bodies of every task, start at once on
their own thread.

No body counts against the budget for longer than ``long_after`` (four switch
intervals): a long CPU-bound body then shares the GIL with the next one, as
threads always did, and a body that began to block stops holding up the queue.
The loop looks at the running bodies when the oldest reaches it, only while
bodies are queued. A queued body's time limit runs while it waits (it is the
attempt's limit; one that passes in the queue is never started); the GIL would
have run the bodies ahead of it first anyway.

Results come back to the loop in batches: a finished worker queues its result
and wakes the loop only if no wake-up is pending. While the next queued body is
known to be short (it usually takes less than the GIL's switch interval, the
loop's own worst wait for the GIL) and more are queued behind it, up to ``HOLD``
results wait for the next ones instead of waking the loop each: one wake-up and
one journal batch for several attempts. The loop's look at long bodies bounds
that wait. Off asyncio ``TaskThreads`` falls back to ``anyio.to_thread`` (no
budget).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import functools
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Final

import anyio
import anyio.to_thread

__all__ = ("HOLD", "TIMED_OUT", "TaskThreads", "cpu_budget")

_running_loop = asyncio._get_running_loop

TIMED_OUT: Final[Any] = object()
"""What `TaskThreads.run` returns when its ``time_limit`` passed first."""

HOLD: Final = 16
"""Most results a worker keeps from the loop while short bodies are queued."""

CPU_BOUND_SHARE: Final = 0.3
"""A task whose bodies were on the CPU for at least this part of their fair
share of the GIL (on average) is CPU-bound. The GIL is not fair over a few
switch intervals: pure-Python bodies were seen getting an eighth of their share
over ten milliseconds, and most of it over the life of a body; bodies that
sleep or wait get a hundredth."""

PARALLEL_RATE: Final = 1.2
"""CPUs' worth of time this process used while several CPU-bound bodies ran:
above it, they run native code in parallel (they release the GIL), so as many
run at once as there are CPUs; at or below it (two windows in a row), pure
Python shares one GIL, and one at a time runs best, with the loop beside it.
Measured on two CPUs: pure Python at most 1.15 (the loop and SQLite's thread
included), two threads hashing with ``hashlib`` 1.4 to 2."""

WINDOW: Final = 0.05
"""Seconds over which the process's CPU rate is measured."""

PROBE_EVERY: Final = 1.0
"""Seconds between looks, while bodies run one at a time, at whether they would
run in parallel (one window with the whole budget)."""

_WEIGHT: Final = 0.25
"""Weight of the last body in a task's average share: one body that did not
wait (a cache hit, the last at a barrier) does not make a waiting task
CPU-bound, two in a row of a new task do."""


def cpu_budget() -> int:
    """CPUs this process may run on: CPU-bound bodies at once, at most."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class _Profile:
    """What the recent bodies of one task did."""

    __slots__ = ("cpu_bound", "seconds", "share")

    def __init__(self) -> None:
        self.cpu_bound = False
        self.share = 0.0
        """Their time on the CPU over their fair share of the GIL (an average
        weighted to the recent ones, from 0: not CPU-bound until seen so)."""
        self.seconds = math.inf
        """How long they take (an average weighted to the recent ones)."""

    def record(self, wall: float, cpu: float, sharing: int) -> None:
        """Judge a finished body.

        It took ``wall`` seconds, ``cpu`` of them on the CPU, while ``sharing``
        threads (bodies and the loop) may have wanted the GIL.
        """
        fair = wall / max(1, sharing)
        share = 1.0 if fair <= 0 else min(1.0, cpu / fair)
        self.share += _WEIGHT * (share - self.share)
        self.cpu_bound = self.share >= CPU_BOUND_SHARE
        self.seconds = wall if self.seconds == math.inf else (self.seconds + wall) / 2


class _Job:
    """One body on its way through the threads."""

    __slots__ = (
        "args",
        "context",
        "counted",
        "fn",
        "future",
        "loop",
        "profile",
        "started",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        profile: _Profile | None,
    ) -> None:
        self.loop = loop
        self.future = future
        self.context = contextvars.copy_context()
        self.fn = fn
        self.args = args
        self.profile = profile
        self.counted = False
        """Holds a unit of the budget."""
        self.started = 0.0
        """When it was handed to a worker."""


_Done = tuple[asyncio.Future[Any], Any, BaseException | None]
_Inbox = queue.SimpleQueue[_Job | None]


class TaskThreads:
    """Reusable worker threads for the bodies of sync tasks (see the module).

    Args:
        name: Prefix of the threads' names.
        budget: CPU-bound bodies running at once, at most (default:
            `cpu_budget`; ``math.inf`` for no budget).
        long_after: Seconds after which a running body no longer counts against
            the budget (default: four GIL switch intervals).

    A worker whose attempt timed out keeps running the abandoned body; the next
    attempt gets another worker, so a stuck body never takes a slot away. The
    caller's contextvars travel with the job (structlog's bound vars reach the
    task's logs).
    """

    def __init__(
        self,
        name: str = "cloaca-task",
        *,
        budget: float | None = None,
        long_after: float | None = None,
    ) -> None:
        self._name = name
        self._budget = cpu_budget() if budget is None else budget
        switch = sys.getswitchinterval()
        self._long_after = 4 * switch if long_after is None else long_after
        self._short = switch
        self._yield_after = switch / 10
        self._idle: list[_Inbox] = []
        self._started = 0
        self._closed = False
        # Workers and the loop both start jobs and count the budget.
        self._lock = threading.Lock()
        self._running = 0
        self._counted: list[_Job] = []
        self._one_at_a_time = False
        """The CPU-bound bodies hold the GIL: count one at a time."""
        self._window_at = time.monotonic()
        self._window_cpu = time.process_time()
        self._mode_at = self._window_at
        self._low_windows = 0
        self._queued: collections.deque[_Job] = collections.deque()
        self._profiles: dict[Hashable, _Profile] = {}
        # Results waiting for the loop (appended by workers, drained on the loop).
        self._done: collections.deque[_Done] = collections.deque()
        self._wake_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._look: asyncio.TimerHandle | None = None

    def is_cpu_bound(self, key: Hashable) -> bool:
        """Whether the recent bodies called with ``key`` were CPU-bound."""
        profile = self._profiles.get(key)
        return profile is not None and profile.cpu_bound

    async def run(
        self,
        fn: Callable[..., Any],
        *args: Any,
        time_limit: float | None = None,
        key: Hashable | None = None,
    ) -> Any:
        """Run ``fn(*args)`` in a worker thread and return (or raise) its result.

        With ``time_limit`` (seconds), return `TIMED_OUT` once that much time
        has passed without a result. Cancelling the caller, or the time limit,
        abandons the call: its thread finishes on its own and the result is
        discarded (a call still queued never starts). ``key`` says what the
        body is (its task): bodies with one key are expected to behave alike;
        without a key a body is never queued.
        """
        loop = _running_loop()
        if loop is None:
            call = functools.partial(fn, *args)
            if time_limit is None:
                return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
            with anyio.move_on_after(time_limit):
                return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
            return TIMED_OUT
        if self._loop is not loop:
            # A new loop (a restarted runtime): results wake that one.
            self._loop = loop
            self._wake_pending = False
            self._look = None
        future: asyncio.Future[Any] = loop.create_future()
        profile = None
        if key is not None:
            profile = self._profiles.get(key)
            if profile is None:
                profile = self._profiles[key] = _Profile()
        job = _Job(loop, future, fn, args, profile)
        budgeted = profile is not None and profile.cpu_bound
        with self._lock:
            start = not budgeted or (
                not self._queued and len(self._counted) < self._limit()
            )
            if start:
                self._begin(job, counted=budgeted)
                inbox = self._idle.pop() if self._idle else None
            else:
                self._queued.append(job)
        if start:
            (inbox or self._spawn()).put(job)
        else:
            self._look_later()
        if time_limit is None:
            return await future
        # A timer on the future instead of a cancel scope around the wait.
        timer = loop.call_later(time_limit, _expire, future)
        try:
            return await future
        finally:
            timer.cancel()

    def close(self) -> None:
        """Let every worker exit once it is idle."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for inbox in idle:
            inbox.put(None)

    # -- the budget (callers hold the lock) ------------------------------------

    def _begin(self, job: _Job, *, counted: bool) -> None:
        self._running += 1
        job.started = time.monotonic()
        job.counted = counted
        if counted:
            self._counted.append(job)

    def _uncount(self, job: _Job) -> None:
        if job.counted:
            job.counted = False
            self._counted.remove(job)

    def _limit(self) -> float:
        return 1 if self._one_at_a_time else self._budget

    def _judge_window(self, now: float) -> None:
        """At the end of a window: do the bodies hold the GIL? (see `WINDOW`)."""
        cpu = time.process_time()
        rate = (cpu - self._window_cpu) / (now - self._window_at)
        self._window_at, self._window_cpu = now, cpu
        if self._one_at_a_time:
            if now - self._mode_at >= PROBE_EVERY and self._queued:
                self._one_at_a_time, self._mode_at = False, now  # probe
                self._low_windows = 0
        elif len(self._counted) > 1 and rate <= PARALLEL_RATE:
            self._low_windows += 1
            if self._low_windows >= 2:
                self._one_at_a_time, self._mode_at = True, now
        else:
            self._low_windows = 0

    def _next(self) -> _Job | None:
        """The next queued job the budget admits, begun."""
        queued = self._queued
        while queued and len(self._counted) < self._limit():
            job = queued.popleft()
            if job.future.done():
                continue  # abandoned while queued: never started
            self._begin(job, counted=True)
            return job
        return None

    # -- the loop's look at long bodies -----------------------------------------

    def _look_later(self) -> None:
        """While bodies are queued, look again when the oldest counted is long."""
        if not self._queued or self._look is not None or self._loop is None:
            return
        with self._lock:
            oldest = min((job.started for job in self._counted), default=None)
        if oldest is None:
            return
        delay = max(0.0, oldest + self._long_after - time.monotonic())
        self._look = self._loop.call_later(delay, self._look_now)

    def _look_now(self) -> None:
        """On the loop: long bodies stop counting; start what the budget admits."""
        self._look = None
        now = time.monotonic()
        starts: list[tuple[_Job, _Inbox | None]] = []
        with self._lock:
            for job in [
                j for j in self._counted if now - j.started >= self._long_after
            ]:
                self._uncount(job)
            while (admitted := self._next()) is not None:
                starts.append((admitted, self._idle.pop() if self._idle else None))
        for job, inbox in starts:
            (inbox or self._spawn()).put(job)
        self._drain()

    # -- the workers -----------------------------------------------------------

    def _spawn(self) -> _Inbox:
        inbox: _Inbox = queue.SimpleQueue()
        self._started += 1
        threading.Thread(
            target=self._work,
            args=(inbox,),
            name=f"{self._name}-{self._started}",
            daemon=True,
        ).start()
        return inbox

    def _work(self, inbox: _Inbox) -> None:
        thread_time = time.thread_time
        job: _Job | None = inbox.get()
        while job is not None:
            cpu_started = thread_time()
            started = time.monotonic()
            error: BaseException | None = None
            result: Any = None
            try:
                result = job.context.run(job.fn, *job.args)
            except BaseException as exc:
                error = exc
            if job.profile is not None:
                job.profile.record(
                    time.monotonic() - started,
                    thread_time() - cpu_started,
                    self._running + 1,
                )
            with self._lock:
                self._running -= 1
                if job.counted and self._budget > 1:
                    now = time.monotonic()
                    if now - self._window_at >= WINDOW:
                        self._judge_window(now)
                self._uncount(job)
                following = self._next()
            try:
                self._hand_back(job, result, error, following)
            except RuntimeError:
                return  # the loop is closed: nobody waits any more
            del result, error
            if following is not None:
                if job.profile is not None and job.profile.seconds >= self._yield_after:
                    # Between bodies, a loop waiting for the GIL takes it now
                    # (its commits and dispatches waited for a forced switch:
                    # mean commit 8 ms, 3.5 ms with this, for 2 ms bodies).
                    # After tiny bodies the loop waits little anyway, and
                    # yielding after each cost a fifth of a burst's speed.
                    time.sleep(0)
                job = following
                continue
            with self._lock:
                if self._closed:
                    return
                self._idle.append(inbox)
            job = inbox.get()

    def _hand_back(
        self,
        job: _Job,
        result: Any,
        error: BaseException | None,
        following: _Job | None,
    ) -> None:
        loop = job.loop
        if loop is not self._loop:
            loop.call_soon_threadsafe(_deliver, job.future, result, error)
            return
        done = self._done
        done.append((job.future, result, error))
        if self._wake_pending:
            return
        profile = None if following is None else following.profile
        if (
            profile is not None
            and profile.seconds <= self._short
            and len(done) < HOLD
            and self._queued
        ):
            # The next body is short: hand back after it, together. Only while
            # more are queued: then the loop's look (armed while bodies queue)
            # bounds the wait, should that body hang.
            return
        self._wake_pending = True
        loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        """On the loop: hand every queued result to its waiting attempt."""
        # Cleared before popping: a result queued after this line either is
        # popped below or schedules a drain of its own.
        self._wake_pending = False
        done = self._done
        while done:
            _deliver(*done.popleft())
        self._look_later()


def _deliver(
    future: asyncio.Future[Any], result: Any, error: BaseException | None
) -> None:
    if future.done():
        return  # cancelled or timed out: the result is discarded
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(TIMED_OUT)
