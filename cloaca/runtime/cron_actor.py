"""The cron scheduler actor: claims due ticks durably and hands them off (API.md 4.12).

``CronScheduler`` wakes when the earliest ``next_run_at`` is due, at the latest
after ``cron_poll_interval_seconds``, or at once when a schedule changes through
this runner. For each due schedule it, in one transaction, moves ``next_run_at``
past now (a compare-and-set on the value it read, so one runner wins a claim) and
writes one audit row per tick under ``UNIQUE (schedule_id, scheduled_time)``
(SCHEMA.md 6). Only the ticks whose rows it inserted are started; each execution
id is derived from its audit row id, the execution row is made durable (a read
through Persistence commits everything queued before it), and the audit row is
linked to it. A crash between claim and link leaves an unlinked row, which
``cron_enable_recovery`` re-runs after ``cron_lost_threshold_minutes``: it first
looks for the derived execution (handed off but not linked: link it, never run
twice), else starts it once more, at most ``cron_max_recovery_attempts`` times per
process and only for ticks younger than ``cron_max_recovery_age_seconds``.

``Poller`` is the shared base of this actor and the trigger poller: a supervisor
whose only children are one-shot ``_Ticker`` timers on the clock (re-arming one
cancels it), so waiting never blocks the mailbox.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import anyio
import msgspec

from actors import (
    Actor,
    ActorRef,
    ChildSpec,
    Restart,
    ShutdownPolicy,
    Supervisor,
    SupervisorFlags,
)
from cloaca.config import RunnerSettings
from cloaca.context import encode_context_data
from cloaca.cron import CronError, CronSchedule, due_ticks, tick_text
from cloaca.logging import get_logger
from cloaca.runtime.messages import LoadExecutions, StartExecution
from cloaca.storage.errors import StorageError
from cloaca.storage.protocol import CronScheduleRow, ScheduleStore, parse_stamp

__all__ = (
    "CronScheduler",
    "Poller",
    "RecoverLost",
    "ServiceStatistics",
    "Wake",
    "cron_execution_id",
    "hand_off",
)

logger = get_logger(__name__)

LOST_BATCH = 100
"""Lost audit rows looked at per recovery pass (the newest ticks first)."""


class Wake(msgspec.Struct, frozen=True):
    """Look for due work now (also sent when a schedule changes)."""


class RecoverLost(msgspec.Struct, frozen=True):
    """Run one lost-execution recovery pass."""


class _Go(msgspec.Struct, frozen=True):
    pass


_GO = _Go()


class _Ticker(Actor[_Go]):
    """A one-shot timer: at ``deadline`` (on the clock) it sends ``message``."""

    mailbox_capacity: ClassVar[float] = 1

    def __init__(self, deadline: float, target: ActorRef[Any], message: object):
        self._deadline = deadline
        self._target = target
        self._message = message

    async def on_start(self) -> None:
        """Start the wait without holding up the parent."""
        self.ref.send_nowait(_GO)

    async def handle(self, message: _Go) -> None:
        """Sleep until the deadline, deliver, stop."""
        await self.clock.sleep_until(self._deadline)
        self._target.send_nowait(self._message)
        self.stop()


class Poller(Supervisor):
    """A service actor that waits on its own timers (see the module docstring)."""

    # Wake-ups and execution ends flow in with send_nowait; never refuse one.
    mailbox_capacity: ClassVar[float] = math.inf

    def __init__(self) -> None:
        super().__init__((), SupervisorFlags(intensity=1_000, period=1.0))
        self._tickers: dict[str, str] = {}
        self._ticker_seq = 0

    def deadline(self, delay: float) -> float:
        """The clock's monotonic time ``delay`` seconds from now."""
        return self.clock.monotonic() + max(0.0, delay)

    async def arm(self, key: str, deadline: float, message: object) -> None:
        """Send ``message`` to this actor at ``deadline`` (replaces timer ``key``).

        The deadline is absolute (see ``deadline``), taken when the delay was
        computed: time that passes while re-arming must not push it back.
        """
        old = self._tickers.pop(key, None)
        if old is not None and any(c.id == old for c in self.which_children()):
            await self.terminate_child(old)
        self._ticker_seq += 1
        child_id = f"{key}#{self._ticker_seq}"
        self._tickers[key] = child_id
        ref = self.ref
        await self.start_child(
            ChildSpec(
                id=child_id,
                factory=lambda: _Ticker(deadline, ref, message),
                restart=Restart.TEMPORARY,
                shutdown=ShutdownPolicy.brutal(),
            )
        )

    def now(self) -> datetime:
        """The clock's wall time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.clock.wall_ms() / 1000, UTC)


def cron_execution_id(record_id: uuid.UUID) -> uuid.UUID:
    """The execution id of an audit row's tick: derived, so recovery can find it.

    A version-4-shaped UUID (API.md 1.5) computed from the audit row id: a runner
    that recovers a lost row looks this id up before starting the tick again.
    """
    digest = hashlib.sha256(b"cloaca.cron:" + record_id.bytes).digest()
    return uuid.UUID(bytes=digest[:16], version=4)


async def hand_off(
    scheduler: ActorRef[Any],
    persistence: ActorRef[Any],
    starts: list[tuple[uuid.UUID, str, dict[str, Any], str]],
) -> list[uuid.UUID]:
    """Start executions and return, once their rows are durable, the accepted ids.

    Args:
        scheduler: The Scheduler actor.
        persistence: The Persistence actor (its reads commit what is queued).
        starts: ``(execution id, workflow name, input context, origin)`` each.

    Returns:
        The ids of the executions started (unknown workflows are left out).
    """
    accepted = []
    for execution_id, workflow, context, origin in starts:
        ok = await scheduler.ask(
            StartExecution(
                execution_id=execution_id,
                workflow_name=workflow,
                context_json=encode_context_data(context),
                origin=origin,
            )
        )
        if ok:
            accepted.append(execution_id)
        else:
            logger.error(
                "cron.handoff.unknown_workflow", workflow=workflow, origin=origin
            )
    if accepted:
        # The scheduler queued their ExecutionCreated entries before answering;
        # this read is served after they are committed (PostgreSQL's foreign key
        # on the audit row needs the execution row).
        await persistence.ask(LoadExecutions(ids=tuple(accepted)))
    return accepted


class ServiceStatistics:
    """Counters of a runner's cron or trigger service; tests wait on them.

    Attributes:
        polls: Looks at the schedules (cron) or trigger polls finished.
        claimed: Cron schedules claimed.
        fired: Executions started for a tick or a trigger fire.
        recovered: Lost cron ticks started again.
        relinked: Lost cron ticks whose execution existed and was linked.
        recoveries: Recovery passes run.
        dropped: Trigger fires dropped as duplicates of one in progress.
        ended: Trigger-started executions seen to end.
        requested: Trigger registrations announced to the trigger service.
        upserted: Trigger registrations it has written (or failed to).
    """

    __slots__ = (
        "_waiters",
        "claimed",
        "dropped",
        "ended",
        "fired",
        "polls",
        "recovered",
        "recoveries",
        "relinked",
        "requested",
        "upserted",
    )

    def __init__(self) -> None:
        self.polls = 0
        self.claimed = 0
        self.fired = 0
        self.recovered = 0
        self.relinked = 0
        self.recoveries = 0
        self.dropped = 0
        self.ended = 0
        self.requested = 0
        self.upserted = 0
        self._waiters: list[tuple[Callable[[], bool], anyio.Event]] = []

    def changed(self) -> None:
        """Wake the waiters whose condition now holds."""
        for waiter in list(self._waiters):
            if waiter[0]():
                self._waiters.remove(waiter)
                waiter[1].set()

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` holds (checked after every change)."""
        if condition():
            return
        event = anyio.Event()
        self._waiters.append((condition, event))
        await event.wait()


class CronScheduler(Poller):
    """The cron service of one runner (see the module docstring)."""

    def __init__(
        self,
        store: ScheduleStore,
        settings: RunnerSettings,
        scheduler: Callable[[], ActorRef[Any]],
        persistence: Callable[[], ActorRef[Any]],
        stats: ServiceStatistics,
        attempts: dict[uuid.UUID, int],
    ) -> None:
        super().__init__()
        self._store = store
        self._settings = settings
        self._scheduler = scheduler
        self._persistence = persistence
        self._stats = stats
        # Recovery attempts per audit row, per process (API.md 4.12); owned by
        # the runtime so that a restarted actor keeps counting.
        self._attempts = attempts

    async def on_start(self) -> None:
        """Poll at once; start recovery when enabled."""
        self.ref.send_nowait(Wake())
        if self._settings.cron_enable_recovery:
            self.ref.send_nowait(RecoverLost())

    async def handle_message(self, message: Any) -> None:
        """Poll on ``Wake``, recover on ``RecoverLost``; re-arm the timers."""
        if isinstance(message, Wake):
            deadline = await self._poll()
            await self.arm("tick", deadline, Wake())
        elif isinstance(message, RecoverLost):
            await self._recover()
            interval = max(1, self._settings.cron_recovery_interval_seconds)
            await self.arm("recover", self.deadline(interval), RecoverLost())
        else:
            await super().handle_message(message)

    # -- firing ----------------------------------------------------------------

    async def _poll(self) -> float:
        """Claim and start every due tick; return when to look next (monotonic)."""
        interval = float(max(1, self._settings.cron_poll_interval_seconds))
        now = self.now()
        try:
            due, earliest = await self._store.due_cron_schedules(now)
            starts = []
            for row in due:
                starts.extend(await self._claim(row, now))
            if starts:
                await self._start(starts, now)
                # Claims moved next_run_at; read the new earliest next time.
                _, earliest = await self._store.due_cron_schedules(now)
        except StorageError as exc:
            logger.warning("cron.poll.failed", error=str(exc))
            earliest = None
        self._stats.polls += 1
        self._stats.changed()
        if earliest is None:
            return self.deadline(interval)
        wait = (parse_stamp(earliest) - self.now()).total_seconds()
        return self.deadline(min(interval, wait))

    async def _claim(
        self, row: CronScheduleRow, now: datetime
    ) -> list[tuple[uuid.UUID, str, dict[str, Any], str, uuid.UUID]]:
        if not _in_window(row, now):
            return []
        try:
            schedule = CronSchedule(row.cron_expression, row.timezone)
            ticks = due_ticks(
                schedule,
                row.catchup_policy,
                parse_stamp(row.next_run_at),
                now,
                self._settings.cron_max_catchup_executions,
            )
            next_run_at = schedule.next_after(now)
        except CronError as exc:
            logger.error(
                "cron.schedule.invalid", schedule_id=str(row.id), error=str(exc)
            )
            return []
        records = await self._store.claim_cron_ticks(
            row.id,
            seen_next_run_at=row.next_run_at,
            next_run_at=next_run_at,
            ticks=ticks,
            now=now,
        )
        if records is None:
            return []  # another runner claimed it first
        self._stats.claimed += 1
        return [
            (
                cron_execution_id(record.id),
                row.workflow_name,
                _context(row, record.scheduled_time),
                f"cron:{row.id}",
                record.id,
            )
            for record in records
        ]

    async def _start(
        self,
        starts: list[tuple[uuid.UUID, str, dict[str, Any], str, uuid.UUID]],
        now: datetime,
    ) -> None:
        records = {start[0]: start[4] for start in starts}
        accepted = await hand_off(
            self._scheduler(), self._persistence(), [start[:4] for start in starts]
        )
        for execution_id in accepted:
            await self._store.link_cron_execution(
                records[execution_id], execution_id, now
            )
            self._stats.fired += 1

    # -- recovery --------------------------------------------------------------

    async def _recover(self) -> None:
        settings = self._settings
        now = self.now()
        stale_before = now - timedelta(minutes=settings.cron_lost_threshold_minutes)
        oldest_tick = now - timedelta(seconds=settings.cron_max_recovery_age_seconds)
        try:
            lost = await self._store.lost_cron_executions(stale_before, LOST_BATCH)
            for item in lost:
                record = item.execution
                if parse_stamp(record.scheduled_time) < oldest_tick:
                    continue  # too old: abandoned, it stays lost
                tried = self._attempts.get(record.id, 0)
                if tried >= settings.cron_max_recovery_attempts:
                    continue
                if not await self._store.reclaim_cron_execution(
                    record.id, record.updated_at, now
                ):
                    continue  # another runner is recovering it
                execution_id = cron_execution_id(record.id)
                if await self._store.existing_executions([execution_id]):
                    # Handed off before a crash, never linked: link, do not re-run.
                    await self._store.link_cron_execution(record.id, execution_id, now)
                    self._stats.relinked += 1
                    continue
                self._attempts[record.id] = tried + 1
                context = _context(item, record.scheduled_time)
                context.update(
                    is_recovery=True,
                    recovery_attempt=tried + 1,
                    original_execution_id=str(record.id),
                )
                accepted = await hand_off(
                    self._scheduler(),
                    self._persistence(),
                    [
                        (
                            execution_id,
                            item.workflow_name,
                            context,
                            f"cron:{record.schedule_id}",
                        )
                    ],
                )
                if accepted:
                    await self._store.link_cron_execution(record.id, execution_id, now)
                    self._stats.recovered += 1
                    logger.info(
                        "cron.recovered",
                        record_id=str(record.id),
                        execution_id=str(execution_id),
                        attempt=tried + 1,
                    )
        except StorageError as exc:
            logger.warning("cron.recovery.failed", error=str(exc))
        finally:
            self._stats.recoveries += 1
            self._stats.changed()


def _in_window(row: CronScheduleRow, now: datetime) -> bool:
    if row.start_date is not None and now < parse_stamp(row.start_date):
        return False
    return row.end_date is None or now <= parse_stamp(row.end_date)


def _context(row: Any, scheduled_time: str) -> dict[str, Any]:
    """The input of a cron execution: exactly the four keys of API.md 4.12."""
    schedule_id = (
        row.id if isinstance(row, CronScheduleRow) else row.execution.schedule_id
    )
    return {
        "scheduled_time": tick_text(parse_stamp(scheduled_time)),
        "schedule_id": str(schedule_id),
        "schedule_timezone": row.timezone,
        "schedule_expression": row.cron_expression,
    }
