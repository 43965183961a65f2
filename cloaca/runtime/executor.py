"""The Executor and its supervised task actors.

Each task attempt is one ``TaskActor``: a transient child of the task supervisor
(``one_for_one``). A failed attempt is a crash of its actor; the supervisor's
restart decider consults the task's ``RetryPolicy`` (attempt budget, retry
condition, backoff with jitter and cap), tells the scheduler whether and when the
task will run again, and restarts the actor after the backoff. The restarted
incarnation runs the next attempt. ``max_concurrent_tasks`` bounds attempts in
flight through one capacity limiter shared by every task actor.
"""

from __future__ import annotations

import functools
import math
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import msgspec
from structlog.contextvars import bound_contextvars

from actors import (
    Actor,
    ActorRef,
    ChildSpec,
    Crashed,
    ExitReason,
    Restart,
    RestartDecision,
    ShutdownPolicy,
    Supervisor,
    SupervisorFlags,
)
from cloaca import registry
from cloaca.logging import get_logger
from cloaca.retry import RetryPolicy
from cloaca.runtime.attempt import AttemptResult, TaskSlots, run_attempt
from cloaca.runtime.messages import (
    RUN_ATTEMPT,
    AbandonAttempt,
    AttemptFailed,
    AttemptStarting,
    AttemptSucceeded,
    DispatchTask,
    RunAttempt,
    SchedulerGeneration,
    TaskRef,
)
from cloaca.runtime.sharing import ClaimedAttempt, TaskExchange
from cloaca.runtime.task_threads import TaskThreads
from cloaca.storage.offers import ClaimedOffer

logger = get_logger(__name__)

_ATTEMPT_SHUTDOWN = ShutdownPolicy.timeout(5.0)
"""How long a stopping runtime lets a running attempt finish."""


def _now(wall_ms: int) -> datetime:
    return datetime.fromtimestamp(wall_ms / 1000, UTC)


class TaskStats:
    """Counters of the task path, read by ``cloaca bench`` to locate a regression.

    Attributes:
        attempts: Attempts admitted to run (past the ``max_concurrent_tasks`` limit).
        queue_wait_seconds: Summed time from the executor receiving a first
            attempt's dispatch to that attempt being admitted: actor start-up plus
            the wait for a free slot. Retries are left out (their backoff is not
            queueing).
        queue_waits: How many first attempts ``queue_wait_seconds`` sums over.
    """

    __slots__ = ("attempts", "queue_wait_seconds", "queue_waits")

    def __init__(self) -> None:
        self.attempts = 0
        self.queue_wait_seconds = 0.0
        self.queue_waits = 0

    def as_dict(self) -> dict[str, float]:
        """Attempts and the mean queue wait in milliseconds."""
        waits = self.queue_waits
        return {
            "task_attempts": self.attempts,
            "task_queue_wait_ms": 1000 * self.queue_wait_seconds / waits
            if waits
            else 0.0,
        }


class AttemptError(Exception):
    """A task attempt failed: the crash reason of its task actor."""

    def __init__(self, task: TaskRef, error: str, policy: RetryPolicy | None) -> None:
        super().__init__(error)
        self.task = task
        self.error = error
        self.policy = policy


class TaskActor(Actor[RunAttempt | AbandonAttempt]):
    """One attempt of one task; a restart is the next attempt."""

    mailbox_capacity: ClassVar[int] = 1
    # on_start only posts one message: no readiness round trip per attempt.
    instant_start: ClassVar[bool] = True

    def __init__(
        self,
        dispatch: DispatchTask,
        scheduler: ActorRef[Any],
        limiter: TaskSlots,
        threads: TaskThreads,
        timeout: float | None,
        stats: TaskStats | None = None,
        received_at: float = 0.0,
        exchange: TaskExchange | None = None,
    ) -> None:
        self._exchange = exchange
        self._dispatch = dispatch
        self._scheduler = scheduler
        self._limiter = limiter
        self._threads = threads
        self._timeout = timeout
        self._stats = stats
        self._received_at = received_at

    async def on_start(self) -> None:
        """Schedule the attempt; starting must not wait for the task body.

        The first attempt's start was journaled with the dispatch. A restart (a
        retry) first asks the scheduler to journal its start and runs on
        ``RunAttempt``.
        """
        if self.incarnation == 1:
            self.ref.send_nowait(RUN_ATTEMPT)
        else:
            self._scheduler.send_nowait(
                AttemptStarting(task=self._task(), reply_to=self.ref)
            )

    def _task(self) -> TaskRef:
        first = self._dispatch.task
        return msgspec.structs.replace(
            first, attempt=first.attempt + self.incarnation - 1
        )

    async def handle(self, message: RunAttempt | AbandonAttempt) -> None:
        """Run the attempt and report it; a failure crashes this actor."""
        if isinstance(message, AbandonAttempt):
            self.stop()
            return
        task = self._task()
        not_before = self._dispatch.not_before
        if not_before is not None and self.incarnation == 1:
            wait = (not_before - _now(self.clock.wall_ms())).total_seconds()
            if wait > 0:
                await self.clock.sleep(wait)
        spec = registry.get_task(task.task_name)
        if spec is None:
            # API.md 4.14: a task whose function is not registered fails for good.
            raise AttemptError(task, f"Task not found: {task.task_name}", None)

        async def run_here() -> AttemptResult:
            stats = self._stats
            if stats is not None:
                stats.attempts += 1
                if self.incarnation == 1 and not_before is None:
                    stats.queue_waits += 1
                    stats.queue_wait_seconds += time.perf_counter() - self._received_at
            with bound_contextvars(
                execution_id=str(task.execution_id),
                task=task.task_name,
                attempt=task.attempt,
            ):
                result = await run_attempt(
                    spec,
                    self._dispatch.input_json,
                    time_limit=self._timeout,
                    threads=self._threads,
                )
                logger.debug(
                    "task.attempt.finished",
                    outcome="ok" if result.error is None else "failed",
                    timed_out=result.timed_out,
                )
            return result

        exchange = self._exchange
        if exchange is None:
            async with self._limiter:
                result = await run_here()
        else:
            try:
                # Here in turn, or offered while other runners have room.
                result = await exchange.run(
                    task, self._dispatch.input_json, self._limiter, run_here
                )
            finally:
                exchange.slot_freed()
        if result.output_json is not None:
            self._scheduler.send_nowait(
                AttemptSucceeded(
                    task=task,
                    output_json=result.output_json,
                    at=_now(self.clock.wall_ms()),
                )
            )
            self.stop()
            return
        raise AttemptError(task, result.error or "unknown error", spec.retry_policy)


class TaskSupervisor(Supervisor):
    """Supervises task actors; restarts them per each task's retry policy."""

    def __init__(
        self,
        scheduler: Callable[[], ActorRef[Any]],
        rng: random.Random,
        stats: TaskStats | None = None,
    ) -> None:
        super().__init__(
            (), SupervisorFlags(intensity=1_000_000, period=1.0), decider=self._decide
        )
        self._scheduler = scheduler
        self._rng = rng
        self._dispatches: dict[str, DispatchTask] = {}
        # The runtime's counters when given, so they outlive a restart of this
        # supervisor.
        self.stats = TaskStats() if stats is None else stats

    def remember(self, child_id: str, dispatch: DispatchTask) -> None:
        """Keep the dispatch of a running child, for crashes that are not attempts."""
        self._dispatches[child_id] = dispatch

    async def _decide(
        self, child_id: str, reason: ExitReason, incarnation: int
    ) -> RestartDecision | None:
        if not isinstance(reason, Crashed):
            self._dispatches.pop(child_id, None)
            return RestartDecision(restart=False)
        at = _now(self.clock.wall_ms())
        exc = reason.exception
        dispatch = self._dispatches.get(child_id)
        if isinstance(exc, AttemptError):
            task, error, policy = exc.task, exc.error, exc.policy
        else:
            # The actor itself broke (not the task body): fail the task, never loop.
            if dispatch is None:
                return RestartDecision(restart=False)
            task, error, policy = (
                dispatch.task,
                f"{reason.error.type_name}: {reason.error.message}",
                None,
            )
        retry = (
            policy is not None
            and dispatch is not None
            and task.attempt < dispatch.max_attempts
            and policy.should_retry(task.attempt, error)
        )
        if retry and policy is not None:
            delay = policy.delay(task.attempt, self._rng)
            self._scheduler().send_nowait(
                AttemptFailed(
                    task=task,
                    error=error,
                    retry_at=at + timedelta(seconds=delay),
                    at=at,
                )
            )
            return RestartDecision(restart=True, delay=delay)
        self._dispatches.pop(child_id, None)
        self._scheduler().send_nowait(
            AttemptFailed(task=task, error=error, retry_at=None, at=at)
        )
        return RestartDecision(restart=False)


class Executor(Actor[DispatchTask | ClaimedOffer]):
    """Turns dispatches, and attempts claimed from other runners, into actors."""

    # The scheduler dispatches with send_nowait (it must never block on the actor
    # it feeds), so a bound here would crash it on a burst: 10,000 executions
    # submitted at once release 10,000 roots in one commit (CONVENTIONS.md 4).
    mailbox_capacity: ClassVar[float] = math.inf

    def __init__(
        self,
        *,
        supervisor: Callable[[], TaskSupervisor],
        scheduler: Callable[[], ActorRef[Any]],
        max_concurrent_tasks: int,
        task_timeout_seconds: float | None,
        exchange: TaskExchange | None = None,
        generation: SchedulerGeneration | None = None,
    ) -> None:
        self._generation = generation
        self._supervisor = supervisor
        self._scheduler = scheduler
        self._limiter = TaskSlots(max(1, max_concurrent_tasks))
        self._threads = TaskThreads()
        self._timeout = task_timeout_seconds
        self._exchange = exchange
        if exchange is not None:
            exchange.limiter = self._limiter

    async def on_stop(self, reason: ExitReason) -> None:
        """Let the task threads exit; attempts still running finish first."""
        self._threads.close()

    async def handle(self, message: DispatchTask | ClaimedOffer) -> None:
        """Have the task supervisor start one task actor for the attempt.

        Without waiting for the start: a dispatch is one message, not a round
        trip, so a burst of dispatches does not queue behind actor start-ups.
        """
        if isinstance(message, ClaimedOffer):
            self._start_claimed(message)
            return
        generation = self._generation
        if generation is not None and message.task.generation != generation.value:
            # Left in the mailbox by a scheduler that was replaced: the new one
            # rebuilt the task from the database and dispatches it again. Started,
            # it would take the task's slot, report to nobody and make the real
            # dispatch fail as a duplicate (found by the deterministic simulation).
            return
        received_at = time.perf_counter()
        supervisor = self._supervisor()
        child_id = f"{message.task.execution_id}:{message.task.task_name}"
        supervisor.remember(child_id, message)
        supervisor.start_child_nowait(
            ChildSpec(
                id=child_id,
                # A partial, not a closure: fewer objects per attempt.
                factory=functools.partial(
                    TaskActor,
                    message,
                    self._scheduler(),
                    self._limiter,
                    self._threads,
                    self._timeout,
                    supervisor.stats,
                    received_at,
                    self._exchange,
                ),
                restart=Restart.TRANSIENT,
                shutdown=_ATTEMPT_SHUTDOWN,
            )
        )

    def _start_claimed(self, offer: ClaimedOffer) -> None:
        exchange = self._exchange
        if exchange is None:
            return
        self._supervisor().start_child_nowait(
            ChildSpec(
                id=f"claimed:{offer.task_execution_id}",
                factory=lambda: ClaimedAttempt(
                    offer, exchange, self._threads, self._timeout
                ),
                restart=Restart.TEMPORARY,
                # Leaving hands unfinished claims back at once (Runtime._leave):
                # their owners run them, nobody waits for this body.
                shutdown=ShutdownPolicy.brutal(),
            )
        )
