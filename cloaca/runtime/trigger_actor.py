"""The trigger poller actor: polls ``@cloaca.trigger`` functions, fires (API.md 4.13).

``TriggerPoller`` keeps a trigger schedule row for every registered trigger (at
start, and on every later registration through ``registry.add_trigger_listener``,
whose calls may come from any thread). It wakes when the next enabled trigger is
due (its ``poll_interval`` after its previous poll here; at once on first sight)
and runs each due poll in its own one-shot ``_Poll`` child, so a slow function
never delays the others: sync functions in a worker thread, ``async def`` ones on
the loop, each under a 30 s limit on the clock. An exception, a result that is not
a ``TriggerResult`` or a timeout is logged and means "no fire"; a good poll sets
``last_poll_at``.

A fire hashes its context (``fire_no_context``, or the first 16 hex digits of
SHA-256 over canonical JSON, SCHEMA.md 7) and inserts an in-progress fire row;
the partial UNIQUE index refuses a second in-progress row with the same hash, so
with ``allow_concurrent=False`` an identical fire is dropped while one runs, in
any process. With ``allow_concurrent=True`` it still runs, and its row is written
when it has finished. The execution gets the fired context plus ``trigger_name``
and ``triggered_at``; the row is linked to it, and completed when it ends (a
finish listener; a periodic sweep completes rows of executions that ended
elsewhere, e.g. resumed after a restart, and rows whose hand-off was lost).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import json
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, ClassVar, Final

import anyio
import anyio.to_thread
import msgspec

from actors import Actor, ActorRef, ChildSpec, Restart, ShutdownPolicy, deadline_scope
from cloaca import registry
from cloaca.logging import get_logger
from cloaca.runtime.cron_actor import Poller, ServiceStatistics, Wake, hand_off
from cloaca.runtime.outcome import ExecutionOutcome
from cloaca.storage.errors import StorageError
from cloaca.storage.protocol import ScheduleStore
from cloaca.trigger import TriggerResult, TriggerSpec

__all__ = ("TriggerPoller", "context_hash")

logger = get_logger(__name__)

POLL_TIMEOUT: Final = 30.0
"""Seconds a trigger function may take (API.md 3.8: not configurable)."""
MIN_INTERVAL: Final = 0.1
"""Floor of the effective poll interval, in seconds (shorter is unspecified)."""
IDLE_WAKE: Final = 1.0
"""With nothing to poll, look at the schedules again this often (the base tick)."""
SWEEP_INTERVAL: Final = 60.0
"""Seconds between sweeps of fire rows whose execution ended unseen."""
LOST_HANDOFF: Final = timedelta(minutes=5)
"""An unlinked in-progress fire row older than this lost its hand-off."""
MAX_STORED_INTERVAL_MS: Final = 2**31 - 1
"""``poll_interval_ms`` is an ``integer`` column on PostgreSQL."""


def context_hash(data: dict[str, Any] | None) -> str:
    """The de-duplication key of a fire (SCHEMA.md 7)."""
    if data is None:
        return "fire_no_context"
    canonical = json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class Upsert(msgspec.Struct, frozen=True):
    """Write (or refresh) the schedule row of a registered trigger."""

    spec: Any


class Polled(msgspec.Struct, frozen=True):
    """A poll ended: ``result`` is None when it failed (``error`` says why)."""

    name: str
    result: Any = None
    error: str | None = None


class Ended(msgspec.Struct, frozen=True):
    """A trigger-started execution ended."""

    execution_id: uuid.UUID


class Sweep(msgspec.Struct, frozen=True):
    """Complete fire rows that will not be completed otherwise."""


class _Go(msgspec.Struct, frozen=True):
    pass


class _Poll(Actor[_Go]):
    """One poll of one trigger function; reports ``Polled`` to its parent."""

    mailbox_capacity: ClassVar[float] = 1

    def __init__(self, spec: TriggerSpec, parent: ActorRef[Any]) -> None:
        self._spec = spec
        self._parent = parent

    async def on_start(self) -> None:
        """Run the poll as the first message, not inside the parent's start."""
        self.ref.send_nowait(_Go())

    async def handle(self, message: _Go) -> None:
        """Call the function under the poll timeout and report what it returned."""
        spec = self._spec
        outcome = Polled(name=spec.name, error="timed out after 30 s")
        clock = self.clock
        async with deadline_scope(clock, clock.monotonic() + POLL_TIMEOUT):
            try:
                value = await self._call()
            except Exception as exc:
                outcome = Polled(name=spec.name, error=f"{type(exc).__name__}: {exc}")
            else:
                if isinstance(value, TriggerResult):
                    outcome = Polled(name=spec.name, result=value)
                else:
                    outcome = Polled(
                        name=spec.name,
                        error=f"returned {type(value).__name__}, not a TriggerResult",
                    )
        self._parent.send_nowait(outcome)
        self.stop()

    async def _call(self) -> object:
        fn = self._spec.function
        if self._spec.is_async:
            value = fn()
        else:
            # Off the loop; a function that outlives the timeout is abandoned.
            value = await anyio.to_thread.run_sync(fn, abandon_on_cancel=True)
        if inspect.isawaitable(value):
            value = await value
        return value


class TriggerPoller(Poller):
    """The trigger service of one runner (see the module docstring)."""

    def __init__(
        self,
        store: ScheduleStore,
        scheduler: Callable[[], ActorRef[Any]],
        persistence: Callable[[], ActorRef[Any]],
        add_finish_listener: Callable[
            [Callable[[ExecutionOutcome], None]], Callable[[], None]
        ],
        stats: ServiceStatistics,
    ) -> None:
        super().__init__()
        self._store = store
        self._scheduler = scheduler
        self._persistence = persistence
        self._add_finish_listener = add_finish_listener
        self._stats = stats
        self._last_poll: dict[str, float] = {}
        self._polling: set[str] = set()
        # Fires that run next to an identical one: execution id -> row to write.
        self._deferred: dict[uuid.UUID, tuple[uuid.UUID, str, str, datetime]] = {}
        self._unsubscribe: list[Callable[[], None]] = []

    # -- lifecycle -------------------------------------------------------------

    async def on_start(self) -> None:
        """Write every registered trigger's row, subscribe, poll at once."""
        for spec in registry.all_triggers():
            await self._upsert(spec)
        ref = self.ref
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()

        stats = self._stats

        def announce(spec: TriggerSpec) -> None:
            # Counted on the loop before any later call of the registering thread
            # runs there, so the management methods can wait for the row.
            stats.requested += 1
            ref.send_nowait(Upsert(spec=spec))

        def registered(spec: TriggerSpec) -> None:
            # Registration happens on the user's thread; the mailbox is the loop's.
            if threading.get_ident() == loop_thread:
                announce(spec)
            else:
                loop.call_soon_threadsafe(announce, spec)

        def ended(outcome: ExecutionOutcome) -> None:
            if outcome.origin is not None and outcome.origin.startswith("trigger:"):
                ref.send_nowait(Ended(execution_id=outcome.execution_id))

        self._unsubscribe = [
            registry.add_trigger_listener(registered),
            self._add_finish_listener(ended),
        ]
        ref.send_nowait(Sweep())
        ref.send_nowait(Wake())

    async def on_stop(self, reason: object) -> None:
        """Unsubscribe from registrations and execution ends."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []

    # -- messages --------------------------------------------------------------

    async def handle_message(self, message: Any) -> None:
        """Dispatch on the message type; every path re-arms the poll timer."""
        reschedule = True
        try:
            if isinstance(message, Upsert):
                try:
                    await self._upsert(message.spec)
                finally:
                    self._stats.upserted += 1
            elif isinstance(message, Polled):
                await self._polled(message)
            elif isinstance(message, Ended):
                reschedule = False
                await self._ended(message.execution_id)
            elif isinstance(message, Sweep):
                reschedule = False
                now = self.now()
                await self._store.sweep_trigger_executions(now - LOST_HANDOFF, now)
                await self.arm("sweep", self.deadline(SWEEP_INTERVAL), Sweep())
            elif not isinstance(message, Wake):
                await super().handle_message(message)
                return
        except StorageError as exc:
            logger.warning("trigger.store.failed", error=str(exc))
        if reschedule:
            await self._schedule_polls()
        self._stats.changed()

    async def _upsert(self, spec: TriggerSpec) -> None:
        await self._store.upsert_trigger_schedule(
            schedule_id=uuid.uuid4(),
            trigger_name=spec.name,
            workflow_name=spec.workflow,
            poll_interval_ms=min(spec.poll_interval_ms, MAX_STORED_INTERVAL_MS),
            allow_concurrent=spec.allow_concurrent,
            now=self.now(),
        )
        # A re-registered function is polled as new.
        self._last_poll.pop(spec.name, None)

    async def _schedule_polls(self) -> None:
        """Start the due polls and arm the timer for the next one."""
        try:
            rows = await self._store.list_trigger_schedules(
                enabled_only=True, limit=1_000_000, offset=0
            )
        except StorageError as exc:
            logger.warning("trigger.store.failed", error=str(exc))
            await self.arm("tick", self.deadline(IDLE_WAKE), Wake())
            return
        now = self.clock.monotonic()
        wait = IDLE_WAKE
        for row in rows:
            name = row.trigger_name
            interval = max(MIN_INTERVAL, row.poll_interval_ms / 1000)
            last = self._last_poll.get(name)
            if name in self._polling:
                continue
            if last is not None and now - last < interval:
                wait = min(wait, last + interval - now)
                continue
            self._last_poll[name] = now
            wait = min(wait, interval)
            spec = registry.get_trigger(name)
            if spec is None:
                logger.error("trigger.not_registered", trigger=name)
                continue
            self._polling.add(name)
            await self.start_child(
                ChildSpec(
                    id=f"poll:{name}:{uuid.uuid4().hex[:8]}",
                    factory=functools.partial(_Poll, spec, self.ref),
                    restart=Restart.TEMPORARY,
                    shutdown=ShutdownPolicy.brutal(),
                )
            )
        await self.arm("tick", now + wait, Wake())

    # -- polls and fires -------------------------------------------------------

    async def _polled(self, message: Polled) -> None:
        name = message.name
        self._polling.discard(name)
        self._stats.polls += 1
        # Counted from the poll's end, so a slow function is not polled back to back.
        self._last_poll[name] = self.clock.monotonic()
        result = message.result
        if result is None:
            logger.warning("trigger.poll.failed", trigger=name, error=message.error)
            return
        await self._store.record_trigger_poll(name, self.now())
        if not result.is_fire_result():
            return
        spec = registry.get_trigger(name)
        row = await self._store.get_trigger_schedule(name)
        if spec is None or row is None or not row.enabled:
            return  # disabled while the poll ran: a disabled trigger never fires
        await self._fire(spec, result._context)

    async def _fire(self, spec: TriggerSpec, data: dict[str, Any] | None) -> None:
        digest = context_hash(data)
        record_id = uuid.uuid4()
        started = self.now()
        in_progress = await self._store.insert_trigger_execution(
            record_id=record_id,
            trigger_name=spec.name,
            context_hash=digest,
            now=started,
        )
        if not in_progress and not spec.allow_concurrent:
            self._stats.dropped += 1
            logger.info("trigger.fire.deduplicated", trigger=spec.name)
            return
        context = dict(data or {})
        context["trigger_name"] = spec.name
        context["triggered_at"] = started.isoformat()
        execution_id = uuid.uuid4()
        accepted = await hand_off(
            self._scheduler(),
            self._persistence(),
            [(execution_id, spec.workflow, context, f"trigger:{spec.name}")],
        )
        self._stats.fired += 1
        if not accepted:
            if in_progress:
                await self._store.link_trigger_execution(
                    record_id, None, self.now(), completed=True
                )
            return
        if in_progress:
            await self._store.link_trigger_execution(
                record_id, execution_id, self.now(), completed=False
            )
        else:
            self._deferred[execution_id] = (record_id, spec.name, digest, started)

    async def _ended(self, execution_id: uuid.UUID) -> None:
        self._stats.ended += 1
        deferred = self._deferred.pop(execution_id, None)
        if deferred is None:
            await self._store.complete_trigger_executions(execution_id, self.now())
            return
        record_id, name, digest, started = deferred
        await self._store.insert_completed_trigger_execution(
            record_id=record_id,
            trigger_name=name,
            context_hash=digest,
            pipeline_execution_id=execution_id,
            started_at=started,
            now=self.now(),
        )
