"""One attempt of one task: the task invocation protocol of API.md 4.4 and 4.9.

``run_attempt`` calls the user's function with a fresh ``Context`` built from the
input JSON, validates what it returns, runs the callbacks and hands back an
``AttemptResult``. Sync functions (and their callbacks) run in one hop to a
``TaskThreads`` worker (``cloaca.runtime.task_threads``); ``async def``
functions are awaited on the loop.
Timeouts follow API.md 4.8 with section 0 item 7: an async attempt is
cancelled at the deadline; a sync attempt is failed at the deadline and its
thread's late result is discarded.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import math
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread
import msgspec

from cloaca import texts
from cloaca.context import Context, decode_context_data, encode_context_data
from cloaca.logging import get_logger
from cloaca.runtime.task_threads import TaskThreads
from cloaca.task import TaskSpec

logger = get_logger(__name__)

_running_loop = asyncio._get_running_loop

TASK_ERROR_PREFIX = texts.TASK_EXECUTION_FAILED_PREFIX
"""API.md 4.4: the error text of a task that raised."""


class AttemptResult(msgspec.Struct, frozen=True):
    """The outcome of one attempt: ``output_json`` on success, else ``error``."""

    output_json: str | None = None
    error: str | None = None
    timed_out: bool = False


def error_text(exc: BaseException) -> str:
    """API.md 4.4: ``Python task execution failed: <Type>: <message>``."""
    return texts.TASK_EXECUTION_FAILED.format(type=type(exc).__name__, message=exc)


def timeout_text(task_id: str, seconds: float) -> str:
    """The error of an attempt that exceeded ``task_timeout_seconds`` (transient)."""
    return f"Task timeout: task '{task_id}' exceeded the timeout of {seconds:g}s"


def report_callback_failure(kind: str, task_id: str, exc: BaseException) -> None:
    """API.md 4.9: callback errors are reported on stderr and never fail the task."""
    print(
        texts.CALLBACK_FAILED.format(
            callback=kind, task_id=task_id, type=type(exc).__name__, message=exc
        ),
        file=sys.stderr,
        flush=True,
    )


class TaskSlots(anyio.CapacityLimiter):
    """``max_concurrent_tasks``: a capacity limiter whose free slot is taken at once.

    The same interface and FIFO fairness as ``anyio.CapacityLimiter``, except
    that acquiring a free slot is not a checkpoint: anyio's limiter yields to
    the event loop (inside a shielded cancel scope) on every acquire, one more
    trip per attempt. Waiting for a slot is cancellable as usual. Borrowers are
    the acquiring tasks unless given.
    """

    def __new__(cls, total_tokens: float) -> TaskSlots:
        """Build the limiter itself (anyio's ``__new__`` picks a backend class)."""
        return object.__new__(cls)

    def __init__(self, total_tokens: float) -> None:
        self._total: float = 0
        self._borrowers: set[object] = set()
        self._waiting: collections.OrderedDict[object, anyio.Event] = (
            collections.OrderedDict()
        )
        self._divertible: set[object] = set()
        """Waiters that `divert` may send elsewhere (`acquire_unless_diverted`)."""
        self.total_tokens = total_tokens

    async def __aenter__(self) -> None:
        await self.acquire_on_behalf_of(_current_task())

    async def __aexit__(self, *exc_info: object) -> None:
        self.release_on_behalf_of(_current_task())

    @property
    def total_tokens(self) -> float:
        """How many slots there are."""
        return self._total

    @total_tokens.setter
    def total_tokens(self, value: float) -> None:
        if not isinstance(value, int) and value != math.inf:
            raise TypeError("total_tokens must be an int or math.inf")
        if value < 0:
            raise ValueError("total_tokens must be >= 0")
        self._total = value
        self._admit()

    @property
    def borrowed_tokens(self) -> int:
        """Slots taken."""
        return len(self._borrowers)

    @property
    def available_tokens(self) -> float:
        """Slots free."""
        return self._total - len(self._borrowers)

    def acquire_nowait(self) -> None:
        """Take a slot for the current task, or raise ``anyio.WouldBlock``."""
        self.acquire_on_behalf_of_nowait(_current_task())

    def acquire_on_behalf_of_nowait(self, borrower: object) -> None:
        """Take a slot for ``borrower``, or raise ``anyio.WouldBlock``."""
        if borrower in self._borrowers:
            raise RuntimeError(
                "this borrower is already holding one of this CapacityLimiter's tokens"
            )
        if self._waiting or len(self._borrowers) >= self._total:
            raise anyio.WouldBlock
        self._borrowers.add(borrower)

    async def acquire(self) -> None:
        """Take a slot for the current task, waiting for one if none is free."""
        await self.acquire_on_behalf_of(_current_task())

    async def acquire_on_behalf_of(self, borrower: object) -> None:
        """Take a slot for ``borrower``, waiting (in turn) if none is free."""
        try:
            self.acquire_on_behalf_of_nowait(borrower)
            return
        except anyio.WouldBlock:
            pass
        event = anyio.Event()  # only when waiting: the lookup cost does not matter
        self._waiting[borrower] = event
        try:
            await event.wait()
        except BaseException:
            self._waiting.pop(borrower, None)
            if borrower in self._borrowers:
                # Granted just as the wait was cancelled: pass the slot on.
                self.release_on_behalf_of(borrower)
            raise

    async def acquire_unless_diverted(self, borrower: object) -> bool:
        """Take a slot for ``borrower`` like `acquire_on_behalf_of`, or give up.

        True holding the slot; False if `divert` took ``borrower`` out of the
        queue first (it holds nothing then).
        """
        try:
            self.acquire_on_behalf_of_nowait(borrower)
            return True
        except anyio.WouldBlock:
            pass
        self._divertible.add(borrower)
        try:
            await self.acquire_on_behalf_of(borrower)
        finally:
            self._divertible.discard(borrower)
        return borrower in self._borrowers

    def divert(self, count: int) -> int:
        """End the wait of up to ``count`` divertible waiters, longest first.

        Their `acquire_unless_diverted` returns False; the other waiters keep
        their places. Returns how many were diverted.
        """
        if count < 1 or not self._divertible:
            return 0
        chosen = [b for b in self._waiting if b in self._divertible][:count]
        for borrower in chosen:
            self._divertible.discard(borrower)
            self._waiting.pop(borrower).set()
        return len(chosen)

    def release(self) -> None:
        """Give back the current task's slot."""
        self.release_on_behalf_of(_current_task())

    def release_on_behalf_of(self, borrower: object) -> None:
        """Give back ``borrower``'s slot; the longest waiter gets it."""
        try:
            self._borrowers.remove(borrower)
        except KeyError:
            raise RuntimeError(
                "this borrower isn't holding any of this CapacityLimiter's tokens"
            ) from None
        self._admit()

    def _admit(self) -> None:
        waiting = self._waiting
        while waiting and len(self._borrowers) < self._total:
            borrower, event = waiting.popitem(last=False)
            self._borrowers.add(borrower)
            event.set()

    def statistics(self) -> anyio.CapacityLimiterStatistics:
        """Slots taken and total, borrowers and waiters (as anyio reports them)."""
        return anyio.CapacityLimiterStatistics(
            len(self._borrowers),
            self._total,
            tuple(self._borrowers),
            len(self._waiting),
        )


def _current_task() -> object:
    task = asyncio.current_task() if _running_loop() is not None else None
    return task if task is not None else anyio.get_current_task().id


class _Abandoned:
    """Set by the loop when it gave up on a sync attempt (read by its thread).

    A plain flag: a ``threading.Event`` builds a lock and a condition per
    attempt, and a single attribute store is atomic.
    """

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


class _Pending:
    """A value the worker thread could not finish: an awaitable for the loop."""

    __slots__ = ("awaitable", "kind")

    def __init__(self, kind: str, awaitable: Awaitable[Any]) -> None:
        self.kind = kind
        self.awaitable = awaitable


def _output_of(
    result: Any, input_json: str, task_id: str
) -> tuple[str | None, str | None]:
    """API.md 4.4 return-value rules: (output_json, error)."""
    if isinstance(result, Context):
        return encode_context_data(result._data), None
    if result is None:
        # The input exactly as delivered: in-place mutations are discarded.
        return input_json, None
    return None, (
        f"{TASK_ERROR_PREFIX}TypeError: task '{task_id}' returned "
        f"{type(result).__name__}; a task must return a Context or None"
    )


def _call_callback(
    kind: str, callback: Callable[..., Any], spec: TaskSpec, *args: Any
) -> Awaitable[Any] | None:
    try:
        value = callback(spec.id, *args)
    except Exception as exc:
        report_callback_failure(kind, spec.id, exc)
        return None
    return value if inspect.isawaitable(value) else None


async def _await_callback(kind: str, spec: TaskSpec, awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception as exc:
        report_callback_failure(kind, spec.id, exc)


def _run_sync(
    spec: TaskSpec, input_json: str, abandoned: _Abandoned
) -> AttemptResult | _Pending:
    """The whole attempt of a sync task, in a worker thread."""
    ctx = Context._from_owned(decode_context_data(input_json))
    try:
        result = spec.function(ctx)
    except Exception as exc:
        return _failure_sync(spec, exc, input_json)
    if inspect.isawaitable(result):
        return _Pending("result", result)
    output, error = _output_of(result, input_json, spec.id)
    if error is not None:
        return AttemptResult(error=error)
    if spec.on_success is not None and not abandoned.is_set():
        pending = _call_callback(
            "on_success",
            spec.on_success,
            spec,
            Context._from_owned(decode_context_data(output or "{}")),
        )
        if pending is not None:
            return _Pending("on_success:" + (output or "{}"), pending)
    return AttemptResult(output_json=output)


def _failure_sync(spec: TaskSpec, exc: BaseException, input_json: str) -> AttemptResult:
    error = error_text(exc)
    if spec.on_failure is not None:
        pending = _call_callback(
            "on_failure",
            spec.on_failure,
            spec,
            error,
            Context._from_owned(decode_context_data(input_json)),
        )
        if pending is not None:
            # An async on_failure of a sync task: close it; it cannot be awaited
            # from the worker thread, and its failure must not be silent.
            report_callback_failure(
                "on_failure", spec.id, TypeError("async callback of a sync task")
            )
            if inspect.iscoroutine(pending):
                pending.close()
    return AttemptResult(error=error)


async def _finish_async(spec: TaskSpec, result: Any, input_json: str) -> AttemptResult:
    output, error = _output_of(result, input_json, spec.id)
    if error is not None:
        return AttemptResult(error=error)
    if spec.on_success is not None:
        pending = _call_callback(
            "on_success",
            spec.on_success,
            spec,
            Context._from_owned(decode_context_data(output or "{}")),
        )
        if pending is not None:
            await _await_callback("on_success", spec, pending)
    return AttemptResult(output_json=output)


async def _failure_async(
    spec: TaskSpec, exc: BaseException, input_json: str
) -> AttemptResult:
    error = error_text(exc)
    if spec.on_failure is not None:
        pending = _call_callback(
            "on_failure",
            spec.on_failure,
            spec,
            error,
            Context._from_owned(decode_context_data(input_json)),
        )
        if pending is not None:
            await _await_callback("on_failure", spec, pending)
    return AttemptResult(error=error)


async def _run_async(spec: TaskSpec, input_json: str) -> AttemptResult:
    ctx = Context._from_owned(decode_context_data(input_json))
    try:
        result = spec.function(ctx)
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:
        return await _failure_async(spec, exc, input_json)
    return await _finish_async(spec, result, input_json)


async def run_attempt(
    spec: TaskSpec,
    input_json: str,
    *,
    time_limit: float | None,
    threads: TaskThreads,
) -> AttemptResult:
    """Run one attempt of ``spec`` on ``input_json`` within ``time_limit`` seconds."""
    if time_limit is None:
        # No deadline, so no cancel scope (creating one costs a backend lookup).
        if spec.is_async:
            return await _run_async(spec, input_json)
        unlimited: AttemptResult | _Pending = await threads.run(
            _run_sync, spec, input_json, _Abandoned(), key=spec.name
        )
        if isinstance(unlimited, _Pending):
            return await _resume_pending(spec, unlimited, input_json)
        return unlimited
    if spec.is_async:
        with anyio.move_on_after(time_limit):
            return await _run_async(spec, input_json)
        return AttemptResult(error=timeout_text(spec.id, time_limit), timed_out=True)

    abandoned = _Abandoned()
    loop = _running_loop()
    started = anyio.current_time() if loop is None else loop.time()
    outcome: AttemptResult | _Pending | None = await threads.run(
        _run_sync, spec, input_json, abandoned, time_limit=time_limit, key=spec.name
    )
    if isinstance(outcome, _Pending):
        # The rare rest on the loop (an awaitable result or callback) gets what
        # is left of the time limit.
        now = anyio.current_time() if loop is None else loop.time()
        left = time_limit - (now - started)
        pending, outcome = outcome, None
        with anyio.move_on_after(left):
            outcome = await _resume_pending(spec, pending, input_json)
    if not isinstance(outcome, AttemptResult):
        abandoned.set()
        logger.warning(
            "task.attempt.abandoned_thread", task=spec.name, timeout_s=time_limit
        )
        return AttemptResult(error=timeout_text(spec.id, time_limit), timed_out=True)
    return outcome


async def _resume_pending(
    spec: TaskSpec, pending: _Pending, input_json: str
) -> AttemptResult:
    """Finish on the loop what a sync task left awaitable."""
    if pending.kind == "result":
        try:
            result = await pending.awaitable
        except Exception as exc:
            return await _failure_async(spec, exc, input_json)
        return await _finish_async(spec, result, input_json)
    await _await_callback("on_success", spec, pending.awaitable)
    return AttemptResult(output_json=pending.kind.partition(":")[2])
