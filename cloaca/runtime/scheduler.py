"""The Scheduler actor: owns the DAG state of every live execution.

It turns execution requests and attempt results into journal entries and
dispatches. Write-ahead ordering: a task's result is journaled, and only after
Persistence answers ``Committed`` are its dependents released or its execution
reported finished (DESIGN.md, Durability). Attempt starts and retry schedules are
journaled without waiting: the journal applies entries in order, so a later
result can never overtake them.

Every journal append names its execution. When the database says another runner
took an execution over (``LeasesLost``, several runners on PostgreSQL), the
scheduler forgets it at once: callbacks waiting for its commits do not run, held
attempts are abandoned, and its caller is told the execution was lost here.
"""

from __future__ import annotations

import math
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from actors import Actor, ActorRef
from cloaca import registry
from cloaca.context import decode_context_data
from cloaca.logging import get_logger
from cloaca.runtime import rules, state as st
from cloaca.runtime.messages import (
    RUN_ATTEMPT,
    AbandonAttempt,
    Append,
    AttemptFailed,
    AttemptStarting,
    AttemptSucceeded,
    Committed,
    DispatchTask,
    LeasesLost,
    LoadExecutions,
    RebuildOwned,
    ResumeExecutions,
    ResumeIntake,
    SchedulerGeneration,
    SchedulerMsg,
    StartExecution,
    StopIntake,
    TaskRef,
)
from cloaca.runtime.outcome import ExecutionOutcome, TaskOutcome
from cloaca.storage import journal as j
from cloaca.storage.protocol import ExecutionRow
from cloaca.workflow import graph_of

logger = get_logger(__name__)

FINAL_STATUSES = frozenset({"Completed", "Failed", "Cancelled"})


def now_utc(clock_wall_ms: int) -> datetime:
    """A clock reading as an aware UTC datetime."""
    return datetime.fromtimestamp(clock_wall_ms / 1000, UTC)


def max_attempts_of(task_name: str) -> int:
    """The attempt budget of a registered task (``retry_attempts``; 0 means 1)."""
    spec = registry.get_task(task_name)
    if spec is None:
        return 1
    return max(1, spec.retry_policy.max_attempts)


class Scheduler(Actor[SchedulerMsg]):
    """Drives ``ExecutionState`` objects and tells the world what happened."""

    # Results flow up into it with send_nowait; it must never refuse one.
    mailbox_capacity: ClassVar[float] = math.inf

    def __init__(
        self,
        *,
        persistence: Callable[[], ActorRef[Any]],
        executor: Callable[[], ActorRef[Any]],
        on_finished: Callable[[ExecutionOutcome], None],
        on_lost: Callable[[uuid.UUID], None],
        owned: set[uuid.UUID],
        generation: SchedulerGeneration,
    ) -> None:
        self._on_lost = on_lost
        self._generation = generation
        self._persistence = persistence
        self._executor = executor
        self._on_finished = on_finished
        # Shared with the runtime so a restarted scheduler knows what to rebuild.
        self._owned = owned
        self._executions: dict[uuid.UUID, st.ExecutionState] = {}
        self._seq = 0
        self._after_commit: deque[_AfterCommit] = deque()
        self._paused = False
        self._held: list[tuple[st.ExecutionState, st.TaskState]] = []
        self._held_starts: list[AttemptStarting] = []

    # -- lifecycle -------------------------------------------------------------

    async def on_start(self) -> None:
        """After a restart, rebuild the executions this runner owned.

        The rebuild is a message, not part of the start: see ``RebuildOwned``.
        """
        self._generation.value = self.incarnation
        if self.incarnation > 1 and self._owned:
            self.ref.send_nowait(RebuildOwned())

    async def _rebuild_owned(self) -> None:
        # Executions this incarnation started itself are live already (their
        # creation may not even be committed yet); a repeated request is a no-op.
        owned = tuple(i for i in self._owned if i not in self._executions)
        if owned:
            rows = await self._persistence().ask(LoadExecutions(ids=owned))
            found = {row.id for row in rows}
            for execution_id in owned:
                if execution_id not in found:
                    # Its creation never became durable: nobody was told it
                    # exists, so report it lost rather than run it half-known.
                    self._owned.discard(execution_id)
                    self._on_lost(execution_id)
            self._resume(rows)

    def _now(self) -> datetime:
        return now_utc(self.clock.wall_ms())

    # -- journal ---------------------------------------------------------------

    def _journal(
        self,
        execution: st.ExecutionState,
        entries: Iterable[j.JournalEvent],
        then: Callable[[], None] | None = None,
        otherwise: Callable[[], None] | None = None,
    ) -> None:
        """Append ``entries`` about ``execution``; run ``then`` once durable.

        ``otherwise`` runs instead when the execution was taken over by another
        runner before the commit (its entries were not written).
        """
        self._seq += 1
        self._persistence().send_nowait(
            Append(
                entries=tuple(entries),
                seq=self._seq,
                generation=self.incarnation,
                execution_id=execution.id,
            )
        )
        if then is not None:
            self._after_commit.append((self._seq, execution.id, then, otherwise))

    def _committed(self, seq: int) -> None:
        queue = self._after_commit
        while queue and queue[0][0] <= seq:
            _, execution_id, then, otherwise = queue.popleft()
            if execution_id in self._executions:
                then()
            elif otherwise is not None:
                otherwise()

    def _leases_lost(self, execution_ids: frozenset[uuid.UUID]) -> None:
        """Forget executions another runner now drives (see the module)."""
        for execution_id in execution_ids:
            execution = self._executions.pop(execution_id, None)
            self._owned.discard(execution_id)
            if execution is None:
                continue
            execution.finished = True
            logger.warning("execution.lease_lost", execution_id=str(execution_id))
            self._on_lost(execution_id)
        self._held = [(e, t) for e, t in self._held if e.id not in execution_ids]
        kept = []
        for message in self._held_starts:
            if message.task.execution_id in execution_ids:
                message.reply_to.send_nowait(AbandonAttempt())
            else:
                kept.append(message)
        self._held_starts = kept

    # -- messages --------------------------------------------------------------

    async def handle(self, message: SchedulerMsg) -> Any:
        """Dispatch on the message type."""
        match message:
            case RebuildOwned():
                await self._rebuild_owned()
            case Committed(seq=seq, generation=generation):
                if generation == self.incarnation:
                    self._committed(seq)
            case AttemptSucceeded():
                self._succeeded(message)
            case AttemptStarting():
                self._attempt_starting(message)
            case AttemptFailed():
                self._failed(message)
            case StartExecution():
                return self._start(message)
            case ResumeExecutions(rows=rows):
                self._resume(rows)
            case LeasesLost(execution_ids=execution_ids):
                self._leases_lost(execution_ids)
            case StopIntake():
                self._paused = True
            case ResumeIntake():
                self._paused = False
                self._resume_held()
        return None

    # -- new executions --------------------------------------------------------

    def _start(self, message: StartExecution) -> bool:
        workflow = registry.get_workflow(message.workflow_name)
        if workflow is None:
            return False
        graph = graph_of(workflow)
        at = self._now()
        tasks = []
        new_rows = []
        for name in graph.task_names:
            row_id = st.new_id()
            attempts = max_attempts_of(name)
            tasks.append(
                st.TaskState(
                    name=name,
                    row_id=row_id,
                    dependencies=graph.dependencies[name],
                    max_attempts=attempts,
                )
            )
            new_rows.append(j.NewTask(id=row_id, task_name=name, max_attempts=attempts))
        execution = st.ExecutionState(
            execution_id=message.execution_id,
            workflow_name=message.workflow_name,
            version=graph.version,
            input_json=message.context_json,
            started_at=at,
            tasks=tasks,
        )
        execution.origin = message.origin
        self._executions[execution.id] = execution
        self._owned.add(execution.id)
        has_input = message.context_json != st.EMPTY_JSON
        # Written Running at once: Pending means "submitted through the database,
        # not claimed yet" (cloaca.runtime.intake), and this one is ours.
        execution.running = True
        entries: list[j.JournalEvent] = [
            j.ExecutionCreated(
                execution_id=execution.id,
                pipeline_name=message.workflow_name,
                pipeline_version=graph.version,
                context_id=st.new_id() if has_input else None,
                context_json=message.context_json if has_input else None,
                tasks=tuple(new_rows),
                at=at,
            ),
            j.ExecutionRunning(execution_id=execution.id, at=at),
        ]
        self._progress(execution, entries, execution.startable(), at)
        return True

    def _resume(self, rows: Iterable[ExecutionRow]) -> None:
        at = self._now()
        for row in rows:
            if row.id in self._executions:
                continue
            execution = rebuild(row)
            if execution is None:
                continue
            if row.status in FINAL_STATUSES:
                # Finished by a commit whose acknowledgement was lost with its
                # connection: report it as it is stored, journal nothing.
                execution.finished = True
                self._owned.discard(execution.id)
                self._on_finished(outcome_of(execution, row.completed_at or at))
                continue
            self._executions[execution.id] = execution
            self._owned.add(execution.id)
            self._progress(execution, [], execution.startable(), at)

    # -- progress --------------------------------------------------------------

    def _progress(
        self,
        execution: st.ExecutionState,
        entries: list[j.JournalEvent],
        candidates: Iterable[st.TaskState],
        at: datetime,
    ) -> None:
        """Journal ``entries`` with the starts they make possible, then dispatch.

        Starting attempts are marked ``Running`` in the same transaction as the
        result that released them, so a task body never runs before its start is
        durable (a task that kills its process is counted by recovery) and no
        extra commit is spent on it.
        """
        dispatches = self._plan_starts(execution, candidates, entries, at)
        if execution.done and not execution.finished:
            entries.append(self._finished_entry(execution, at))
            self._journal(execution, entries, then=lambda: self._finish(execution, at))
            return
        if not entries:
            self._send(dispatches)
            return
        self._journal(execution, entries, then=lambda: self._send(dispatches))

    def _plan_starts(
        self,
        execution: st.ExecutionState,
        candidates: Iterable[st.TaskState],
        entries: list[j.JournalEvent],
        at: datetime,
    ) -> list[DispatchTask]:
        dispatches: list[DispatchTask] = []
        queue = deque(candidates)
        while queue:
            task = queue.popleft()
            if task.status not in (st.NOT_STARTED, st.READY):
                continue
            if self._paused:
                self._held.append((execution, task))
                continue
            input_json = execution.input_json_for(task)
            if not rules.is_always(task.rule) and not execution.rule_holds(
                task, decode_context_data(input_json)
            ):
                execution.mark_skipped(task, at)
                entries.append(
                    j.TaskSkipped(
                        task_execution_id=task.row_id, reason=rules.SKIP_REASON, at=at
                    )
                )
                queue.extend(execution.release(task))
                continue
            if not execution.running:
                execution.running = True
                entries.append(j.ExecutionRunning(execution_id=execution.id, at=at))
            if not task.start_marked:
                entries.append(
                    j.TaskStarted(
                        task_execution_id=task.row_id, attempt=task.attempt, at=at
                    )
                )
            not_before = task.retry_at
            execution.mark_running(task, at)
            dispatches.append(
                DispatchTask(
                    task=TaskRef(
                        execution_id=execution.id,
                        task_name=task.name,
                        row_id=task.row_id,
                        attempt=task.attempt,
                        generation=self.incarnation,
                    ),
                    input_json=input_json,
                    max_attempts=task.max_attempts,
                    not_before=not_before,
                )
            )
        return dispatches

    def _send(self, dispatches: list[DispatchTask]) -> None:
        executor = self._executor()
        for dispatch in dispatches:
            executor.send_nowait(dispatch)

    def _resume_held(self) -> None:
        held, self._held = self._held, []
        at = self._now()
        by_execution: dict[uuid.UUID, list[st.TaskState]] = {}
        for execution, task in held:
            if execution.id in self._executions:
                by_execution.setdefault(execution.id, []).append(task)
        for execution_id, tasks in by_execution.items():
            self._progress(self._executions[execution_id], [], tasks, at)
        starting, self._held_starts = self._held_starts, []
        for message in starting:
            self._attempt_starting(message)

    def _lookup(self, ref: TaskRef) -> tuple[st.ExecutionState, st.TaskState] | None:
        if ref.generation != self.incarnation:
            return None  # an attempt of a scheduler that has been replaced
        execution = self._executions.get(ref.execution_id)
        if execution is None:
            return None
        task = execution.tasks.get(ref.task_name)
        if task is None or task.status in st.TERMINAL:
            return None
        return execution, task

    def _attempt_starting(self, message: AttemptStarting) -> None:
        """A restarted task actor is ready to run a retry: mark it, then let it go."""
        found = self._lookup(message.task)
        if found is None:
            message.reply_to.send_nowait(AbandonAttempt())
            return
        if self._paused:
            self._held_starts.append(message)
            return
        execution, task = found
        at = self._now()
        task.attempt = message.task.attempt
        execution.mark_running(task, at)
        entry = j.TaskStarted(
            task_execution_id=task.row_id, attempt=task.attempt, at=at
        )
        self._journal(
            execution,
            (entry,),
            then=lambda: message.reply_to.send_nowait(RUN_ATTEMPT),
            otherwise=lambda: message.reply_to.send_nowait(AbandonAttempt()),
        )

    def _succeeded(self, message: AttemptSucceeded) -> None:
        found = self._lookup(message.task)
        if found is None:
            return
        execution, task = found
        output = message.output_json
        context_id = st.new_id() if output != st.EMPTY_JSON else None
        execution.mark_completed(task, output, context_id, message.at)
        entry = j.TaskCompleted(
            task_execution_id=task.row_id,
            execution_id=execution.id,
            task_name=task.name,
            context_id=context_id,
            context_json=output if context_id is not None else None,
            at=message.at,
        )
        self._progress(execution, [entry], execution.release(task), message.at)

    def _failed(self, message: AttemptFailed) -> None:
        found = self._lookup(message.task)
        if found is None:
            return
        execution, task = found
        if message.retry_at is not None:
            execution.mark_retrying(task, message.error)
            self._journal(
                execution,
                (
                    j.TaskRetryScheduled(
                        task_execution_id=task.row_id,
                        attempt=task.attempt,
                        retry_at=message.retry_at,
                        error=message.error,
                        at=message.at,
                    ),
                ),
            )
            # The supervisor restarts the task actor after the backoff; until it
            # asks to start, the task is not startable by anyone else.
            task.status = st.RUNNING
            return
        execution.mark_failed(task, message.error, message.at)
        entry = j.TaskFailed(
            task_execution_id=task.row_id, error=message.error, at=message.at
        )
        self._progress(execution, [entry], execution.release(task), message.at)

    def _finished_entry(
        self, execution: st.ExecutionState, at: datetime
    ) -> j.ExecutionFinished:
        return j.ExecutionFinished(
            execution_id=execution.id,
            status=execution.status,
            context_id=execution.final_context_ref(),
            error=execution.error_message(),
            at=at,
        )

    def _finish(self, execution: st.ExecutionState, at: datetime) -> None:
        if execution.finished:
            return
        execution.finished = True
        self._executions.pop(execution.id, None)
        self._owned.discard(execution.id)
        self._on_finished(outcome_of(execution, at))


_AfterCommit = tuple[int, uuid.UUID, Callable[[], None], Callable[[], None] | None]
"""(seq, execution id, then, otherwise): see ``Scheduler._journal``."""


def rebuild(row: ExecutionRow) -> st.ExecutionState | None:
    """The DAG state of a stored execution; None if its workflow is unknown here."""
    workflow = registry.get_workflow(row.pipeline_name)
    if workflow is None:
        logger.warning(
            "execution.workflow_unavailable",
            execution_id=str(row.id),
            workflow=row.pipeline_name,
        )
        return None
    graph = graph_of(workflow)
    tasks = []
    for task_row in row.tasks:
        status = task_row.status
        # Recovery resets orphans before resuming; a Running row here is an
        # attempt this runner lost in an infrastructure restart: run it again,
        # without a second start mark (the row already says Running).
        marked = status == st.RUNNING
        task = st.TaskState(
            name=task_row.task_name,
            row_id=task_row.id,
            dependencies=graph.dependencies.get(task_row.task_name, ()),
            max_attempts=max(1, task_row.max_attempts),
            status=st.READY if marked else status,
            attempt=max(1, task_row.attempt),
            rule=rules.parse_rule(task_row.trigger_rules),
        )
        task.start_marked = marked
        task.retry_at = task_row.retry_at if status == st.READY else None
        task.output_json = task_row.output_context_json or (
            st.EMPTY_JSON if status == st.COMPLETED else None
        )
        task.completed_at = task_row.completed_at
        task.started_at = task_row.started_at
        task.error = task_row.last_error or task_row.error_details
        tasks.append(task)
    execution = st.ExecutionState(
        execution_id=row.id,
        workflow_name=row.pipeline_name,
        version=row.pipeline_version,
        input_json=row.context_json or st.EMPTY_JSON,
        started_at=row.started_at,
        tasks=tasks,
    )
    execution.running = row.status == st.RUNNING_EXECUTION
    execution.recount_pending()
    return execution


def outcome_of(execution: st.ExecutionState, at: datetime) -> ExecutionOutcome:
    """The report of a finished execution."""
    return ExecutionOutcome(
        execution_id=execution.id,
        workflow_name=execution.workflow_name,
        status=execution.status,
        started_at=execution.started_at,
        completed_at=at,
        final_context_json=execution.final_context_json(),
        error=execution.error_message(),
        origin=execution.origin,
        tasks=tuple(
            TaskOutcome(
                task_name=t.name,
                task_id=t.id,
                status=t.status,
                attempts=t.attempt,
                error=t.error if t.status == st.FAILED else None,
                started_at=t.started_at,
                completed_at=t.completed_at,
            )
            for t in execution.tasks.values()
        ),
    )


def retry_time(at: datetime, delay_seconds: float) -> datetime:
    """When a retried attempt may start."""
    return at + timedelta(seconds=delay_seconds)
