"""The runtime of one runner: its store, its actor tree and the callers waiting.

``Runtime`` is an async context manager. Entering it opens the store (creating or
verifying the schema), runs start-up recovery, then starts the supervision tree::

    root (rest_for_one, intensity 3 / 30 s)
    ├── persistence      Persistence: journal + group commit
    ├── scheduler        Scheduler: DAG state of live executions
    ├── tasks            TaskSupervisor: one transient TaskActor per attempt
    ├── executor         Executor: dispatches -> task actors
    ├── leases           LeaseKeeper: heartbeats (PostgreSQL only)
    ├── intake           Intake: claims executions submitted through the database
    └── sharing          Sharing: task offers between runners (PostgreSQL only)

On PostgreSQL several runtimes (processes, machines) may share one database:
each has a ``runner_id`` and drives only executions it holds a lease on
(``cloaca.runtime.leases``); start-up recovery then takes only executions
without a live lease, and a runner that dies is replaced by the others once its
leases expire. A runner whose executor is full offers ready attempts to the
others (``cloaca.runtime.sharing``). Leaving it shuts down gracefully: intake
stops, actors drain up to the deadline, the journal is flushed, this runner's
leases are released (the others are woken to take its unfinished work at
once), the store is closed.
``DefaultRunner`` hosts it on a background event loop; ``AsyncRunner`` on the
caller's own.
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
    ActorDeadError,
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
from cloaca.runtime.executor import Executor, TaskStats, TaskSupervisor
from cloaca.runtime.intake import Intake
from cloaca.runtime.leases import (
    Lease,
    LeaseKeeper,
    claim_executions,
    kept_listening,
    lease_ttl_from_env,
)
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
from cloaca.runtime.recovery import plan_requeue, recover
from cloaca.runtime.scheduler import Scheduler, outcome_of, rebuild
from cloaca.runtime.schedules import Schedules, start_schedules
from cloaca.runtime.sharing import LOOK, Sharing, TaskExchange
from cloaca.runtime.state import new_id
from cloaca.storage import open_store
from cloaca.storage.errors import StorageError
from cloaca.storage.leases import lease_store_for
from cloaca.storage.offers import ClaimedOffer, offer_store_for
from cloaca.storage.protocol import LeaseListener, Store

logger = get_logger(__name__)

FINAL_STATUSES = frozenset({"Completed", "Failed", "Cancelled"})

ASK_ATTEMPTS = 5
"""Asks of a runtime actor tried before giving up: more crashes in a row than the
root supervisor's intensity allows end the runtime anyway."""

ROOT_FLAGS = SupervisorFlags(strategy=Strategy.REST_FOR_ONE, intensity=3, period=30.0)


class _Waiter:
    __slots__ = ("event", "lost", "outcome")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.outcome: ExecutionOutcome | None = None
        self.lost = False


def claim_limit(max_concurrent_tasks: int) -> int:
    """Most executions a leased runtime drives at once before it stops claiming.

    Twice the attempt concurrency keeps the executor fed while dependents are
    released; whatever exceeds it is left to the other runners.
    """
    return max(4, 2 * max_concurrent_tasks)


class Runtime:
    """One runner's engine; see the module docstring.

    Args:
        url: The database URL (API.md 4.15).
        settings: The runner's configuration snapshot.
        schema: PostgreSQL schema of the tenant (API.md 4.16).
        clock: The actors' clock (a ``ManualClock`` in tests).
        shutdown_timeout: Seconds each actor gets to drain at shutdown.
        rng: Randomness of retry jitter.
        store: A store to use instead of opening ``url`` (fault injection).
        lease_ttl: Seconds an execution lease lasts without renewal (PostgreSQL);
            default ``CLOACA_LEASE_TTL_SECONDS`` or 30.
    """

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
        lease_ttl: float | None = None,
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
        self.task_stats = TaskStats()
        """Counters of the task path (attempts, queue waits), for ``cloaca bench``."""
        self.schedules: Schedules | None = None
        self.runner_id = uuid.uuid4()
        """This runtime's identity in the lease table."""
        leases = lease_store_for(self.store)
        self._lease: Lease | None = None
        if leases is not None:
            ttl = lease_ttl_from_env() if lease_ttl is None else lease_ttl
            self._lease = Lease(store=leases, runner_id=self.runner_id, ttl=ttl)
        self._listener: LeaseListener | None = None
        self._intake: Intake | None = None
        self._offers = None if leases is None else offer_store_for(leases)
        self.exchange: TaskExchange | None = None
        """Task-level sharing with other runners (PostgreSQL); set at start."""

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        await self.store.open()
        try:
            resumable = []
            lease = self._lease
            if lease is not None:
                await lease.leases.prepare()
                # Recovery under leases: only executions nobody drives any more.
                resumable = await claim_executions(
                    lease,
                    self.store,
                    limit=claim_limit(self.settings.max_concurrent_tasks),
                    recover=self.settings.enable_recovery,
                    at=datetime.now(UTC),
                )
                self._owned.update(row.id for row in resumable)
                await self._keep_listening()
            elif self.settings.enable_recovery:
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
            with anyio.CancelScope(shield=True):
                await self._leave()
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
            self._task_supervisor = TaskSupervisor(
                scheduler_ref, self._rng, self.task_stats
            )
            return self._task_supervisor

        settings = self.settings
        lease = self._lease
        if lease is not None and self._offers is not None:
            self.exchange = TaskExchange(
                self._offers, self.runner_id, lease.ttl, system.clock
            )
        exchange = self.exchange
        await system.spawn(
            ChildSpec(
                id="persistence",
                factory=lambda: Persistence(
                    self.store,
                    scheduler_ref,
                    self.journal_stats,
                    self._generation,
                    self._lease,
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
                    exchange=exchange,
                    generation=self._generation,
                ),
            )
        )
        interval = max(0.01, settings.scheduler_poll_interval_ms / 1000)
        if lease is not None:
            await system.spawn(
                ChildSpec(
                    id="leases",
                    factory=lambda: LeaseKeeper(
                        lease, scheduler_ref, self._owned, self._keep_listening
                    ),
                    shutdown=ShutdownPolicy.brutal(),
                )
            )
            # Claims are woken by NOTIFY; polling is only the safety net.
            interval = max(interval, min(2.0, lease.ttl / 3))

        def make_intake() -> Intake:
            self._intake = Intake(
                self.store,
                scheduler_ref,
                self._owned,
                interval,
                lease=lease,
                claim_limit=claim_limit(settings.max_concurrent_tasks),
                recover=settings.enable_recovery,
            )
            return self._intake

        await system.spawn(
            ChildSpec(
                id="intake",
                factory=make_intake,
                shutdown=ShutdownPolicy.brutal(),
            )
        )
        if exchange is not None:
            await self._spawn_sharing(system, exchange, interval)

    async def _spawn_sharing(
        self, system: ActorSystem, exchange: TaskExchange, interval: float
    ) -> None:
        root = system.root

        def start_claimed(offer: ClaimedOffer) -> None:
            root.ref_of("executor").send_nowait(offer)

        def make_sharing() -> Sharing:
            sharing = Sharing(
                exchange,
                self.settings.max_concurrent_tasks,
                start_claimed,
                interval,
            )
            exchange.on_slot_free(lambda: sharing.poke(LOOK))
            return sharing

        await system.spawn(
            ChildSpec(
                id="sharing", factory=make_sharing, shutdown=ShutdownPolicy.brutal()
            )
        )

    def _wake_intake(self) -> None:
        if self._intake is not None and not self._closed:
            self._intake.wake()

    async def _keep_listening(self) -> None:
        """Listen for wake-ups, again if the connection was lost (PostgreSQL)."""
        lease = self._lease
        if lease is None or self._closed:
            return
        self._listener = await kept_listening(
            self._listener,
            lambda: lease.leases.listen(self._wake_intake),
            failed_event="lease.listen_failed",
        )

    async def _leave(self) -> None:
        """Graceful leave: close the listener and release every lease at once.

        Before the leases go: interrupted attempts are put back (uncounted), and
        task offers go, this runner's own (their results would have no reader)
        and its unfinished claims on others' (handed back, so their owners need
        not wait for the claims to expire).
        """
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.aclose()
        await self._requeue_interrupted()
        lease = self._lease
        if lease is None:
            return
        if self._offers is not None:
            try:
                await self._offers.leave(lease.runner_id)
            except StorageError as exc:
                logger.warning("sharing.leave_failed", error=str(exc))
        try:
            released = await lease.leases.release(lease.runner_id)
        except StorageError as exc:
            # They expire on their own; the others then take the work over.
            logger.warning("lease.release_failed", error=str(exc))
        else:
            if released:
                logger.info("lease.released", executions=released)

    async def _stop_sharing(self) -> None:
        """Leaving: take no more offers and hand back claims not yet started.

        Their owners would otherwise wait for this runner's whole drain before
        getting them back; claimed attempts already running finish and post.
        """
        exchange, lease = self.exchange, self._lease
        if exchange is None or lease is None:
            return
        exchange.accepting = False
        with anyio.CancelScope(shield=True):
            try:
                await exchange.offers.renew_claims(
                    lease.runner_id, lease.ttl, tuple(exchange.running)
                )
            except StorageError as exc:
                logger.warning("sharing.hand_back_failed", error=str(exc))

    async def _requeue_interrupted(self) -> None:
        """Put attempts this shutdown cut short back to ``Ready``, uncounted.

        Runs once every actor stopped. Left ``Running``, they would look like
        orphans of a crash to the next runner, which counts each against the
        task's attempt budget (``plan_recovery``): rolling restarts would end
        in ``ABANDONED`` tasks.
        """
        owned = tuple(self._owned)
        if not owned:
            return
        try:
            rows = [
                row
                for execution_id in owned
                if (row := await self.store.get_execution(execution_id)) is not None
                and row.status not in FINAL_STATUSES
            ]
            entries = plan_requeue(rows, datetime.now(UTC))
            if not entries:
                return
            lease = self._lease
            if lease is None:
                await self.store.apply(entries)
            else:
                await lease.leases.apply_leased(
                    entries,
                    runner_id=lease.runner_id,
                    touched=[row.id for row in rows],
                    ttl=lease.ttl,
                )
        except StorageError as exc:
            # They stay Running: the next runner recovers them as a crash's.
            logger.warning("shutdown.requeue_failed", error=str(exc))
            return
        logger.info("shutdown.requeued", attempts=len(entries))

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
        await self._stop_sharing()
        try:
            if self._system is not None:
                # Not inside a shield scope: the system's task group must be exited
                # as the current cancel scope of this task.
                await self._system.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self._leave()
                finally:
                    await self.store.close()
            for waiter in self._waiters.values():
                waiter.event.set()

    @property
    def closed(self) -> bool:
        """True once shutdown began."""
        return self._closed

    # -- executions ------------------------------------------------------------

    def _finished(self, outcome: ExecutionOutcome) -> None:
        intake = self._intake
        if self._lease is not None and intake is not None and intake.starved:
            # Capacity freed while work was left unclaimed for want of it: claim
            # it now. Otherwise a claim per finished execution would cost a
            # transaction each for nothing.
            self._wake_intake()
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
        self,
        workflow_name: str,
        context_json: str,
        *,
        origin: str | None = None,
        execution_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        """Start an execution without waiting for it; return its id.

        ``origin`` says who started it (``cron:<id>``, ``trigger:<name>``); it is
        reported in the ``ExecutionOutcome`` that finish listeners receive.
        ``execution_id`` is the id to use (a new one by default).
        """
        execution_id = execution_id or new_id()
        request = StartExecution(
            execution_id=execution_id,
            workflow_name=workflow_name,
            context_json=context_json,
            origin=origin,
        )
        for _ in range(ASK_ATTEMPTS):
            try:
                accepted = await self._scheduler().ask(request)
            except ActorDeadError:
                # The scheduler crashed around the request. If it took the
                # execution on, its successor resumes it (or reports it lost if
                # its creation never became durable); if not, ask that successor.
                if execution_id in self._owned:
                    return execution_id
                continue
            if not accepted:
                raise UnknownWorkflow(workflow_name)
            return execution_id
        raise RunnerClosed()

    async def execute(self, workflow_name: str, context_json: str) -> ExecutionOutcome:
        """Run an execution to its end (API.md 3.9.2) and report it."""
        execution_id = new_id()
        # Registered before the start: a fast execution may end before submit returns.
        waiter = self._waiters[execution_id] = _Waiter()
        try:
            await self.submit(workflow_name, context_json, execution_id=execution_id)
            timeout = self.settings.pipeline_timeout_seconds
            with anyio.move_on_after(timeout) as scope:
                await waiter.event.wait()
                if waiter.lost:
                    waiter.outcome = await self._follow(execution_id)
            if scope.cancelled_caught:
                raise ExecutionTimedOut(timeout or 0)
        finally:
            self._waiters.pop(execution_id, None)
        if waiter.outcome is not None:
            return waiter.outcome
        if waiter.lost and not self._closed:
            raise ExecutionLost(execution_id)
        raise RunnerClosed()

    async def _follow(self, execution_id: uuid.UUID) -> ExecutionOutcome | None:
        """Wait in the database for the end of an execution this runner lost.

        Another runner took it over (this one's lease had lapsed), so its end is
        reported by reading it as stored, at the poll interval. None when it was
        never stored (its creation was lost) or this runner is shutting down.
        """
        assert self._system is not None
        clock = self._system.clock
        interval = max(0.05, self.settings.scheduler_poll_interval_ms / 1000)
        logger.info("execution.following", execution_id=str(execution_id))
        while not self._closed:
            try:
                row = await self.store.get_execution(execution_id)
            except StorageError as exc:
                logger.warning("execution.follow_failed", error=str(exc))
            else:
                if row is None:
                    return None
                if row.status in FINAL_STATUSES:
                    execution = rebuild(row)
                    if execution is None:
                        return None
                    return outcome_of(execution, row.completed_at or datetime.now(UTC))
            await clock.sleep(interval)
        return None

    async def wait_for(self, execution_id: uuid.UUID) -> None:
        """Wait until ``execution_id`` (started anywhere, e.g. resumed) has ended."""
        waiter = self._waiters.setdefault(execution_id, _Waiter())
        for _ in range(ASK_ATTEMPTS):
            try:
                rows = await self._system_ref("persistence").ask(
                    LoadExecutions(ids=(execution_id,))
                )
                break
            except ActorDeadError:
                continue  # Persistence crashed answering; its successor answers
        else:
            raise RunnerClosed()
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
        if self.exchange is not None:
            self.exchange.accepting = False
        await self._scheduler().send(StopIntake())

    async def resume_intake(self) -> None:
        """Start attempts again."""
        if self.exchange is not None:
            self.exchange.accepting = True
        await self._scheduler().send(ResumeIntake())
