"""Start-up recovery of executions interrupted by a crash (API.md 4.14).

Runs before the actors start, straight on the store. Tasks found ``Running`` are
orphans of a dead process: each is reset to ``Ready`` (``task_reset`` event) unless
it was already running during as many crashes as its attempt budget allows, in
which case it fails for good (``task_abandoned``) so a task that kills its process
cannot loop forever. Executions whose workflow is not registered any more have
their orphans failed and end ``Failed``. Completed tasks are never touched, so
they are never re-run.
"""

from __future__ import annotations

from datetime import datetime

from cloaca import registry
from cloaca.logging import get_logger
from cloaca.storage import journal as j
from cloaca.storage.protocol import ExecutionRow, Store

logger = get_logger(__name__)

RUNNING = "Running"


def abandon_text(crashes: int, budget: int) -> str:
    """The error of a task that kept dying with its process."""
    return (
        "ABANDONED: Exceeded recovery attempts (the task was running during "
        f"{crashes} crashes; its attempt budget is {budget})"
    )


def workflow_gone_task_text(name: str) -> str:
    """API.md 4.14: an orphan whose workflow is no longer registered."""
    return f"ABANDONED: Workflow '{name}' no longer available in registry"


def workflow_gone_text(name: str) -> str:
    """API.md 4.14: the error of an execution abandoned for that reason."""
    return f"Workflow '{name}' no longer available - abandoned during recovery"


def plan_recovery(rows: list[ExecutionRow], at: datetime) -> list[j.JournalEvent]:
    """The journal entries that repair ``rows``; pure."""
    entries: list[j.JournalEvent] = []
    for row in rows:
        orphans = [t for t in row.tasks if t.status == RUNNING]
        if registry.get_workflow(row.pipeline_name) is None:
            if not orphans:
                continue
            entries.extend(
                j.TaskAbandoned(
                    task_execution_id=task.id,
                    execution_id=row.id,
                    task_name=task.task_name,
                    error=workflow_gone_task_text(row.pipeline_name),
                    kind="workflow_unavailable",
                    at=at,
                )
                for task in orphans
            )
            entries.append(
                j.ExecutionFinished(
                    execution_id=row.id,
                    status="Failed",
                    context_id=None,
                    error=workflow_gone_text(row.pipeline_name),
                    at=at,
                )
            )
            continue
        for task in orphans:
            budget = max(1, task.max_attempts)
            crashes = task.recovery_attempts + 1
            if crashes > budget:
                entries.append(
                    j.TaskAbandoned(
                        task_execution_id=task.id,
                        execution_id=row.id,
                        task_name=task.task_name,
                        error=abandon_text(crashes, budget),
                        at=at,
                    )
                )
            else:
                entries.append(
                    j.TaskReset(
                        task_execution_id=task.id,
                        execution_id=row.id,
                        task_name=task.task_name,
                        recovery_attempt=crashes,
                        at=at,
                    )
                )
    return entries


def plan_requeue(rows: list[ExecutionRow], at: datetime) -> list[j.JournalEvent]:
    """Entries that put attempts a graceful shutdown cut short back to ``Ready``.

    Unlike crash recovery this counts nothing against the task: the runner chose
    to stop, the task did not kill it, so rolling restarts never abandon work.
    Pure.
    """
    return [
        j.TaskReset(
            task_execution_id=task.id,
            execution_id=row.id,
            task_name=task.task_name,
            recovery_attempt=task.recovery_attempts,
            at=at,
        )
        for row in rows
        for task in row.tasks
        if task.status == RUNNING
    ]


async def recover(store: Store, at: datetime) -> list[ExecutionRow]:
    """Repair interrupted executions; return those the scheduler should resume."""
    rows = await store.load_unfinished()
    if not rows:
        return []
    entries = plan_recovery(rows, at)
    if entries:
        await store.apply(entries)
        logger.info("recovery.repaired", executions=len(rows), entries=len(entries))
        rows = await store.load_unfinished()
    resumable = []
    for row in rows:
        if registry.get_workflow(row.pipeline_name) is None:
            logger.warning(
                "recovery.workflow_unavailable",
                execution_id=str(row.id),
                workflow=row.pipeline_name,
            )
            continue
        resumable.append(row)
    return resumable
