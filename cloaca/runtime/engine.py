"""The runtime of one runner: its store, its actor tree and the callers waiting.

``Runtime`` is an async context manager. Entering it opens the store (creating or
verifying the schema), runs start-up recovery, then starts the supervision tree::

    root (rest_for_one, intensity 3 / 30 s)
    ├── persistence      Persistence: journal + group commit
    ├── scheduler        Scheduler: DAG state of live executions
    ├── tasks            TaskSupervisor: one transient TaskActor per attempt
    ├── executor         Executor: dispatches -> task actors
    └── intake           Intake: claims executions submitted through the database

Leaving it shuts down gracefully: intake stops, actors drain up to the deadline,
the journal is flushed, the store is closed. ``DefaultRunner`` hosts it on a
background event loop; ``AsyncRunner`` on the caller's own.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import anyio

from actors import (
    ActorSystem,
    ChildSpec,
    Clock,
    ShutdownPolicy,
    Strategy,
    SupervisorFlags,
)
from cloaca.config import RunnerSettings
from cloaca.logging import get_logger
from cloaca.runtime.errors import (
    ExecutionLost,
    ExecutionTimedOut,
    RunnerClosed,
    UnknownWorkflow,
)
from cloaca.runtime.executor import Executor, TaskSupervisor
from cloaca.runtime.intake import Intake
from cloaca.runtime.messages import (
    LoadExecutions,
    ResumeExecutions,
    ResumeIntake,
    SchedulerGeneration,
    StartExecution,
    StopIntake,
)
from cloaca.runtime.outcome import ExecutionOutcome
from cloaca.runtime.persistence import JournalStats, Persistence
from cloaca.runtime.recovery import recover
from cloaca.runtime.scheduler import Scheduler
from cloaca.runtime.schedules import Schedules, start_schedules
from cloaca.storage import open_store
from cloaca.storage.protocol import Store

logger = get_logger(__name__)

FINAL_STATUSES = frozenset({"Completed", "Failed", "Cancelled"})

ROOT_FLAGS = SupervisorFlags(strategy=Strategy.REST_FOR_ONE, intensity=3, period=30.0)


class _Waiter:
    __slots__ = ("event", "lost", "outcome")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.outcome: ExecutionOutcome | None = None
        self.lost = False


class Runtime:
    """One runner's engine; see the module docstring."""

    def __init__(
        self,
        url: str,
        settings: RunnerSettings,
        *,
        schema: str | None = None,
        clock: Clock | None = None,
        shutdown_timeout: float = 5.0,
        rng: random.Random | None = None,
        store: Store | None = None,
    ) -> None:
        self.settings = settings
        # ``store`` lets fault-injection tests wrap a real store.
        self.store: Store = store or open_store(
            url, pool_size=settings.db_pool_size, schema=schema
        )
        self._clock = clock
        self._shutdown_timeout = shutdown_timeout
        self._rng = rng or random.Random()
        self._system: ActorSystem | None = None
        self._waiters: dict[uuid.UUID, _Waiter] = {}
        self._owned: set[uuid.UUID] = set()
        self._generation = SchedulerGeneration()
        self._task_supervisor: TaskSupervisor | None = None
        self._closed = False
        self._finish_listeners: list[Callable[[ExecutionOutcome], None]] = []
        self.journal_stats = JournalStats()
        self.schedules: Schedules | None = None

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        await self.store.open()
        try:
            resumable = []
            if self.settings.enable_recovery:
                resumable = await recover(self.store, datetime.now(UTC))
                # Owned before the intake starts polling, so it never claims them.
                self._owned.update(row.id for row in resumable)
            self._system = system = ActorSystem(
                clock=self._clock,
                flags=ROOT_FLAGS,
                shutdown_timeout=self._shutdown_timeout,
            )
            await system.__aenter__()
            try:
                await self._spawn_tree(system)
                self.schedules = await start_schedules(self, system)
            except BaseException:
                await system.__aexit__(None, None, None)
                raise
        except BaseException:
            await self.store.close()
            raise
        if resumable:
            system.root.ref_of("scheduler").send_nowait(
                ResumeExecutions(rows=tuple(resumable))
            )
        return self

    async def _spawn_tree(self, system: ActorSystem) -> None:
        root = system.root

        def scheduler_ref() -> Any:
            return root.ref_of("scheduler")

        def task_supervisor() -> TaskSupervisor:
            assert self._task_supervisor is not None
            return self._task_supervisor

        def make_task_supervisor() -> TaskSupervisor:
            self._task_supervisor = TaskSupervisor(scheduler_ref, self._rng)
            return self._task_supervisor

        settings = self.settings
        await system.spawn(
            ChildSpec(
                id="persistence",
                factory=lambda: Persistence(
                    self.store, scheduler_ref, self.journal_stats, self._generation
                ),
                shutdown=ShutdownPolicy.timeout(self._shutdown_timeout),
            )
        )
        await system.spawn(
            ChildSpec(
                id="scheduler",
                factory=lambda: Scheduler(
                    persistence=lambda: root.ref_of("persistence"),
                    executor=lambda: root.ref_of("executor"),
                    on_finished=self._finished,
                    on_lost=self._lost,
                    owned=self._owned,
                    generation=self._generation,
                ),
            )
        )
        await system.spawn(
            ChildSpec(
                id="tasks",
                factory=make_task_supervisor,
                shutdown=ShutdownPolicy.timeout(self._shutdown_timeout),
            )
        )
        await system.spawn(
            ChildSpec(
                id="executor",
                factory=lambda: Executor(
                    supervisor=task_supervisor,
                    scheduler=scheduler_ref,
                    max_concurrent_tasks=settings.max_concurrent_tasks,
                    task_timeout_seconds=settings.task_timeout_seconds or None,
                ),
            )
        )
        await system.spawn(
            ChildSpec(
                id="intake",
                factory=lambda: Intake(
                    self.store,
                    scheduler_ref,
                    self._owned,
                    max(0.01, settings.scheduler_poll_interval_ms / 1000),
                ),
                shutdown=ShutdownPolicy.brutal(),
            )
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Graceful shutdown; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._system is not None:
                # Not inside a shield scope: the system's task group must be exited
                # as the current cancel scope of this task.
                await self._system.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                await self.store.close()
            for waiter in self._waiters.values():
                waiter.event.set()

    @property
    def closed(self) -> bool:
        """True once shutdown began."""
        return self._closed

    # -- executions ------------------------------------------------------------

    def _finished(self, outcome: ExecutionOutcome) -> None:
        waiter = self._waiters.pop(outcome.execution_id, None)
        if waiter is not None:
            waiter.outcome = outcome
            waiter.event.set()
        for listener in self._finish_listeners:
            try:
                listener(outcome)
            except Exception:
                logger.exception(
                    "execution.finish_listener_failed",
                    execution_id=str(outcome.execution_id),
                )

    def _lost(self, execution_id: uuid.UUID) -> None:
        waiter = self._waiters.pop(execution_id, None)
        if waiter is not None:
            waiter.lost = True
            waiter.event.set()

    def add_finish_listener(
        self, listener: Callable[[ExecutionOutcome], None]
    ) -> Callable[[], None]:
        """Call ``listener`` (on the loop, must not block) when any execution ends."""
        self._finish_listeners.append(listener)

        def remove() -> None:
            if listener in self._finish_listeners:
                self._finish_listeners.remove(listener)

        return remove

    def _scheduler(self) -> Any:
        return self._system_ref("scheduler")

    async def submit(
        self, workflow_name: str, context_json: str, *, origin: str | None = None
    ) -> uuid.UUID:
        """Start an execution without waiting for it; return its id.

        ``origin`` says who started it (``cron:<id>``, ``trigger:<name>``); it is
        reported in the ``ExecutionOutcome`` that finish listeners receive.
        """
        execution_id = uuid.uuid4()
        accepted = await self._scheduler().ask(
            StartExecution(
                execution_id=execution_id,
                workflow_name=workflow_name,
                context_json=context_json,
                origin=origin,
            )
        )
        if not accepted:
            raise UnknownWorkflow(workflow_name)
        return execution_id

    async def execute(self, workflow_name: str, context_json: str) -> ExecutionOutcome:
        """Run an execution to its end (API.md 3.9.2) and report it."""
        execution_id = uuid.uuid4()
        waiter = self._waiters[execution_id] = _Waiter()
        try:
            accepted = await self._scheduler().ask(
                StartExecution(
                    execution_id=execution_id,
                    workflow_name=workflow_name,
                    context_json=context_json,
                )
            )
            if not accepted:
                raise UnknownWorkflow(workflow_name)
            timeout = self.settings.pipeline_timeout_seconds
            with anyio.move_on_after(timeout) as scope:
                await waiter.event.wait()
            if scope.cancelled_caught:
                raise ExecutionTimedOut(timeout or 0)
        finally:
            self._waiters.pop(execution_id, None)
        if waiter.lost:
            raise ExecutionLost(execution_id)
        if waiter.outcome is None:
            raise RunnerClosed()
        return waiter.outcome

    async def wait_for(self, execution_id: uuid.UUID) -> None:
        """Wait until ``execution_id`` (started anywhere, e.g. resumed) has ended."""
        waiter = self._waiters.setdefault(execution_id, _Waiter())
        rows = await self._system_ref("persistence").ask(
            LoadExecutions(ids=(execution_id,))
        )
        if not rows or rows[0].status in FINAL_STATUSES:
            self._waiters.pop(execution_id, None)
            return
        await waiter.event.wait()

    def _system_ref(self, name: str) -> Any:
        if self._closed or self._system is None:
            raise RunnerClosed()
        return self._system.root.ref_of(name)

    async def stop_intake(self) -> None:
        """Stop starting attempts; running ones finish (API.md section 0 item 9)."""
        await self._scheduler().send(StopIntake())

    async def resume_intake(self) -> None:
        """Start attempts again."""
        await self._scheduler().send(ResumeIntake())
