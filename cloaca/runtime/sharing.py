"""Task-level work sharing between runners on one PostgreSQL database.

DESIGN.md, Scale-out: a runner dispatches the tasks it makes ready to its own
executor first and leaves what exceeds its capacity for others to claim. Here,
"exceeds" means: the attempt's turn has come (its start is journaled) but every
slot of ``max_concurrent_tasks`` is taken and another runner is alive. Then the
task actor offers the attempt (``cloaca.storage.offers``) instead of queueing
silently, and waits for whichever comes first:

* a local slot, for which it queues in turn like any local attempt: it
  withdraws the offer (only possible while nobody holds a live claim on it) and
  runs the attempt here, as it would have without sharing;
* a result posted by the runner that claimed it: the attempt succeeded or failed
  there, and the task actor reports it to its scheduler exactly as if it had run
  here (retries, their backoff and the attempt budget stay the owner's).

Only the owner of an execution ever journals a completion, under its execution
lease, so sharing adds no second writer: a claimer's result is only a row in the
offer table until the owner reads it. If the claimer dies, its claim expires;
the offer is open again, to others and to the owner's next free slot. If the
offer disappears (the owner's lease was taken over and the new owner dropped the
offers, or a result read was lost with its connection), the attempt runs here:
at-least-once, never a lost task.

``TaskExchange`` is the owner's side (waiting attempts, wake-ups); the
``Sharing`` actor is the claimer's side and the housekeeping: it announces the
runner (so a runner alone offers nothing), renews its claims, claims offers
when slots are free, runs them as ``ClaimedAttempt`` actors under the task
supervisor, and reads results when their owner is woken (``LISTEN``).

Runners announce how many of their slots are free (every quarter second while
that changes or while they are full, else every round of housekeeping), and a
full runner offers at most as many attempts as the others had free, so full
runners soon stop offering to each other.

An attempt that queued for a local slot while nobody had room is offered after
all when a peer announces room before its turn comes (the longest waiters
first), so a runner that joins takes on a full runner's backlog too.

Limit, known and accepted: a runner learns of a new peer at its next
announcement, up to a round of housekeeping (two seconds at most) when it is not
full.
"""

from __future__ import annotations

import contextlib
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import ClassVar, Final

import anyio
import msgspec
from structlog.contextvars import bound_contextvars

from actors import Actor, Clock, deadline_scope
from cloaca import registry
from cloaca.logging import get_logger
from cloaca.runtime.attempt import AttemptResult, TaskSlots, run_attempt
from cloaca.runtime.leases import kept_listening
from cloaca.runtime.messages import TaskRef
from cloaca.runtime.task_threads import TaskThreads
from cloaca.storage.errors import StorageError
from cloaca.storage.offers import ClaimedOffer, OfferResult, OfferStore
from cloaca.storage.protocol import LeaseListener

logger = get_logger(__name__)

CLAIM_BATCH: Final = 16
"""Most offers claimed per look."""

ANNOUNCE_EVERY: Final = 0.25
"""Seconds between announcements of free slots while they change or this runner
is full: offers follow the others' room with at most this much delay, so two
full runners soon stop offering to each other. One small statement each."""

MAX_CLAIMS: Final = 2
"""Claims an offer may have before only its owner may run it: each claim whose
claimer died without a result was one lost runner; a task that kills every
runner it lands on should cost its owner, not the whole fleet."""


class SharingStats:
    """Counters of task sharing, for ``cloaca bench`` and tests.

    Attributes:
        offered: Attempts this runner offered to others.
        withdrawn: Offers it took back to run here.
        remote_results: Results of its offers that another runner posted.
        claimed: Attempts of other runners it claimed.
        posted: Results it posted for claimed attempts.
        refused: Results it could not post (the claim was no longer its own).
    """

    __slots__ = (
        "claimed",
        "offered",
        "posted",
        "refused",
        "remote_results",
        "withdrawn",
    )

    def __init__(self) -> None:
        self.offered = 0
        self.withdrawn = 0
        self.remote_results = 0
        self.claimed = 0
        self.posted = 0
        self.refused = 0

    def as_dict(self) -> dict[str, int]:
        """Every counter by name."""
        return {name: getattr(self, name) for name in self.__slots__}


def _plain(value: uuid.UUID) -> uuid.UUID:
    """``value`` as a ``uuid.UUID`` (rows read back hold the driver's subclass)."""
    return value if type(value) is uuid.UUID else uuid.UUID(int=value.int)


class _Waiting:
    """An offered attempt its task actor is waiting on."""

    __slots__ = ("queued", "result", "wake")

    def __init__(self) -> None:
        self.wake = anyio.Event()
        self.result: OfferResult | None = None
        self.queued = False
        """Waiting in the slot queue (rather than for a claimer's result)."""

    def answered(self) -> bool:
        """A result arrived (a method: it changes while its attempt awaits)."""
        return self.result is not None


class TaskExchange:
    """The owner's side of sharing: offers attempts, waits, withdraws.

    Args:
        offers: The offer store.
        runner_id: This runtime's identity (its leases and offers).
        ttl: Seconds a claim lasts without renewal.
        clock: The actors' clock (waits between offer checks).
    """

    def __init__(
        self, offers: OfferStore, runner_id: uuid.UUID, ttl: float, clock: Clock
    ) -> None:
        self.offers = offers
        self.runner_id = runner_id
        self.ttl = ttl
        self.clock = clock
        self.limiter: TaskSlots | None = None
        """The executor's slots; set by the executor."""
        self.peer_free_slots = 0
        """Free attempt slots of the other live runners at their last
        announcement: at most this many attempts are offered at once."""
        self.accepting = True
        """False while the runtime is stopped or leaving: no new offers or claims."""
        self.offers_open = False
        """Another runner announced offers that this one has not yet drained."""
        self.stats = SharingStats()
        self.working: set[uuid.UUID] = set()
        """Claimed attempts of others this runner has yet to finish (renewed)."""
        self.running: set[uuid.UUID] = set()
        """Those of ``working`` whose body holds a slot here now."""
        self.announced = anyio.Event()
        """Set once this runner announced itself and learnt its peers' capacity."""
        self._waiting: dict[uuid.UUID, _Waiting] = {}
        self._on_slot_free: Callable[[], None] | None = None

    @property
    def check_interval(self) -> float:
        """Seconds between looks at an unanswered offer (its claimer may be dead)."""
        return self.ttl / 3

    def on_slot_free(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when a slot frees while others' offers are open."""
        self._on_slot_free = callback

    def should_offer(self, limiter: anyio.CapacityLimiter) -> bool:
        """Offer rather than queue: no slot is free and other runners had room."""
        return (
            self.accepting
            and limiter.available_tokens < 1
            and len(self._waiting) < self.peer_free_slots
        )

    async def run(
        self,
        task: TaskRef,
        input_json: str,
        limiter: TaskSlots,
        run_here: Callable[[], Awaitable[AttemptResult]],
    ) -> AttemptResult:
        """Run one attempt: here in turn, or offered while the others have room.

        An attempt queued for a local slot is offered after all if other runners
        announce room before its turn comes (`room_changed`): a runner that
        joins takes on the backlog of a full one, not only its new work.
        ``run_here`` is called holding a slot of ``limiter``.
        """
        borrower = object()
        while True:
            if self.should_offer(limiter):
                return await self.run_shared(task, input_json, limiter, run_here)
            if await limiter.acquire_unless_diverted(borrower):
                try:
                    return await run_here()
                finally:
                    limiter.release_on_behalf_of(borrower)

    def room_changed(self) -> None:
        """Peers announced their free slots: offer the queued attempts that fit."""
        room = self.peer_free_slots - len(self._waiting)
        if room > 0 and self.accepting and self.limiter is not None:
            self.limiter.divert(room)

    def slot_freed(self) -> None:
        """An attempt left its slot: claim others' offers if any are open."""
        if self.offers_open and self._on_slot_free is not None:
            self._on_slot_free()

    def recheck(self) -> None:
        """Offers changed hands (a claimer left): look again.

        Attempts that wait for a claimer's result queue for a slot again;
        queued ones keep their place.
        """
        for waiting in self._waiting.values():
            if not waiting.queued:
                waiting.wake.set()

    def deliver(self, results: list[OfferResult]) -> None:
        """Hand results read from the offer table to the attempts waiting on them."""
        for result in results:
            waiting = self._waiting.get(_plain(result.task_execution_id))
            if waiting is None:
                continue  # its attempt ran here after all; a duplicate run
            self.stats.remote_results += 1
            waiting.result = result
            waiting.wake.set()

    async def run_shared(
        self,
        task: TaskRef,
        input_json: str,
        limiter: anyio.CapacityLimiter,
        run_here: Callable[[], Awaitable[AttemptResult]],
    ) -> AttemptResult:
        """Run one attempt here or on another runner, whichever is first free.

        ``run_here`` runs the attempt body; it is called holding a slot of
        ``limiter``. Returns the attempt's result either way.
        """
        offers = self.offers
        row_id = _plain(task.row_id)
        waiting = _Waiting()
        # Registered before the offer exists: its result may be read before the
        # offer's own round trip returns.
        self._waiting[row_id] = waiting
        try:
            try:
                await offers.offer(
                    task_execution_id=row_id,
                    execution_id=task.execution_id,
                    owner_id=self.runner_id,
                    task_name=task.task_name,
                    attempt=task.attempt,
                    input_json=input_json,
                )
            except StorageError as exc:
                logger.warning(
                    "sharing.offer_failed", task=task.task_name, error=str(exc)
                )
                async with limiter:
                    return await run_here()
            self.stats.offered += 1
            while True:
                if waiting.result is not None:
                    return AttemptResult(
                        output_json=waiting.result.output_json,
                        error=waiting.result.error,
                    )
                waiting.wake = anyio.Event()
                if await self._slot_unless_woken(waiting, limiter):
                    try:
                        withdrawn = await self._withdraw(row_id)
                    except BaseException:
                        limiter.release_on_behalf_of(waiting)
                        raise
                    if withdrawn:
                        try:
                            return await run_here()
                        finally:
                            limiter.release_on_behalf_of(waiting)
                    limiter.release_on_behalf_of(waiting)
                    # A live claim holds it: wait for that runner's result,
                    # looking again after a while in case it died.
                    if await self._answered_within_interval(waiting):
                        continue
                    if await self._gone(row_id):
                        # Taken over, or its result was lost on the way: run it
                        # here rather than lose it (at-least-once).
                        async with limiter:
                            return await run_here()
        finally:
            # A restarted task actor may have registered the same task since.
            if self._waiting.get(row_id) is waiting:
                del self._waiting[row_id]

    async def _slot_unless_woken(
        self, waiting: _Waiting, limiter: anyio.CapacityLimiter
    ) -> bool:
        """Queue for a slot like a local attempt.

        True holding it (on behalf of ``waiting``), False if a result or a
        recheck came first.
        """
        got = False
        waiting.queued = True
        try:
            async with anyio.create_task_group() as tg:

                async def take() -> None:
                    nonlocal got
                    await limiter.acquire_on_behalf_of(waiting)
                    got = True
                    tg.cancel_scope.cancel()

                tg.start_soon(take)
                await waiting.wake.wait()
                tg.cancel_scope.cancel()
        finally:
            waiting.queued = False
            if not got:
                # Handed over just as the wait was cancelled: give it back.
                with contextlib.suppress(RuntimeError):
                    limiter.release_on_behalf_of(waiting)
        return got

    async def _answered_within_interval(self, waiting: _Waiting) -> bool:
        async with deadline_scope(
            self.clock, self.clock.monotonic() + self.check_interval
        ):
            await waiting.wake.wait()
        return waiting.answered() or waiting.wake.is_set()

    async def _withdraw(self, row_id: uuid.UUID) -> bool:
        try:
            withdrawn = await self.offers.withdraw(row_id, self.runner_id)
        except StorageError as exc:
            logger.warning("sharing.withdraw_failed", error=str(exc))
            return False
        if withdrawn:
            self.stats.withdrawn += 1
        return withdrawn

    async def _gone(self, row_id: uuid.UUID) -> bool:
        try:
            state = await self.offers.state(row_id, self.runner_id)
        except StorageError as exc:
            logger.warning("sharing.offer_check_failed", error=str(exc))
            return False
        if state is not None and state.finished:
            # Posted, but its wake-up was missed: read it now.
            self.deliver(await self._take_results())
            return False
        return state is None

    async def _take_results(self) -> list[OfferResult]:
        try:
            return await self.offers.take_results(self.runner_id)
        except StorageError as exc:
            logger.warning("sharing.take_results_failed", error=str(exc))
            return []


# -- the claimer's side ----------------------------------------------------------


class Look(msgspec.Struct, frozen=True):
    """Claim open offers now (a wake-up, or a slot freed)."""


class Results(msgspec.Struct, frozen=True):
    """Results of this runner's offers were posted: read them."""


class Housekeeping(msgspec.Struct, frozen=True):
    """Announce the runner, renew claims, look for offers (the safety net)."""


LOOK: Final = Look()
RESULTS: Final = Results()
HOUSEKEEPING: Final = Housekeeping()

SharingMsg = Look | Results | Housekeeping


class ClaimedAttempt(Actor[Look]):
    """Runs one attempt claimed from another runner and posts its result."""

    mailbox_capacity: ClassVar[int] = 1

    def __init__(
        self,
        offer: ClaimedOffer,
        exchange: TaskExchange,
        threads: TaskThreads,
        timeout: float | None,
    ) -> None:
        self._offer = offer
        self._exchange = exchange
        self._threads = threads
        self._timeout = timeout

    async def on_start(self) -> None:
        """Run at once."""
        self.ref.send_nowait(LOOK)

    async def handle(self, message: Look) -> None:
        """Run the body in a slot, post the result, stop."""
        offer, exchange = self._offer, self._exchange
        limiter = exchange.limiter
        assert limiter is not None
        try:
            spec = registry.get_task(offer.task_name)
            async with limiter:
                exchange.running.add(offer.task_execution_id)
                if spec is None:
                    result = AttemptResult(error=f"Task not found: {offer.task_name}")
                else:
                    with bound_contextvars(
                        execution_id=str(offer.execution_id),
                        task=offer.task_name,
                        attempt=offer.attempt,
                        owner=str(offer.owner_id),
                    ):
                        result = await run_attempt(
                            spec,
                            offer.input_json,
                            time_limit=self._timeout,
                            threads=self._threads,
                        )
            try:
                posted = await exchange.offers.post_result(
                    offer.task_execution_id,
                    exchange.runner_id,
                    attempt=offer.attempt,
                    output_json=result.output_json,
                    error=result.error,
                )
            except StorageError as exc:
                # The claim expires and the owner or another runner runs it again.
                logger.warning("sharing.post_failed", error=str(exc))
                posted = False
            if posted:
                exchange.stats.posted += 1
            else:
                exchange.stats.refused += 1
        finally:
            exchange.working.discard(offer.task_execution_id)
            exchange.running.discard(offer.task_execution_id)
            exchange.slot_freed()
        self.stop()


class Sharing(Actor[SharingMsg]):
    """The claimer's side of sharing and its housekeeping (see the module).

    Between messages it waits for the next round of housekeeping; a message
    (a wake-up from ``LISTEN``, a freed slot) ends the wait at once (``poke``).

    Args:
        exchange: This runtime's exchange.
        capacity: ``max_concurrent_tasks``, announced to the other runners.
        start_attempt: Starts a ``ClaimedAttempt`` under the task supervisor.
        interval: Seconds between rounds of housekeeping (announcement, claim
            renewal, the safety-net look); a third of the claim time at most.
    """

    mailbox_capacity: ClassVar[float] = math.inf

    def __init__(
        self,
        exchange: TaskExchange,
        capacity: int,
        start_attempt: Callable[[ClaimedOffer], None],
        interval: float,
    ) -> None:
        self._exchange = exchange
        self._capacity = capacity
        self._start_attempt = start_attempt
        self._interval = interval
        self._listener: LeaseListener | None = None
        self._due = -math.inf
        self._announce_due = -math.inf
        self._announced_free = -1
        self._sleeping: anyio.CancelScope | None = None
        self._poked = 0
        """Poked messages not yet handled (while any wait, never sleep)."""

    async def on_start(self) -> None:
        """Announce the runner at once."""
        self.ref.send_nowait(HOUSEKEEPING)

    async def on_stop(self, reason: object) -> None:
        """Close the listening connection."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with anyio.CancelScope(shield=True):
                await listener.aclose()

    def poke(self, message: Look | Results) -> None:
        """Deliver ``message`` and end the wait for housekeeping (on the loop)."""
        self._poked += 1
        self.ref.send_nowait(message)
        if self._sleeping is not None:
            self._sleeping.cancel()

    def _offered(self) -> None:
        self._exchange.offers_open = True
        # Perhaps handed back by a claimer that left: this runner's own waiting
        # attempts may take theirs back at once if a slot is free.
        self._exchange.recheck()
        self.poke(LOOK)

    def _done(self) -> None:
        self.poke(RESULTS)

    async def handle(self, message: SharingMsg) -> None:
        """One look, read or round of housekeeping; then wait for the next."""
        exchange = self._exchange
        match message:
            case Look():
                self._poked = max(0, self._poked - 1)
                await self._look()
            case Results():
                self._poked = max(0, self._poked - 1)
                exchange.deliver(await exchange._take_results())
            case Housekeeping():
                pass
        now = self.clock.monotonic()
        if now >= self._due:
            await self._housekeeping()
            self._due = now + self._interval
            self._announce_due = now + ANNOUNCE_EVERY
        elif now >= self._announce_due:
            await self._announce(only_if_changed=True)
            self._announce_due = now + ANNOUNCE_EVERY
        if self._poked > 0:
            # Poked while busy: those messages wait in the mailbox, so serve
            # them now instead of sleeping in front of them.
            return
        with anyio.CancelScope() as scope:
            self._sleeping = scope
            try:
                await self.clock.sleep_until(min(self._due, self._announce_due))
            finally:
                self._sleeping = None
        if not scope.cancel_called:
            self.ref.send_nowait(HOUSEKEEPING)

    async def _announce(self, *, only_if_changed: bool = False) -> None:
        """Tell the others how many slots are free here; learn theirs.

        Between rounds of housekeeping, only when that changed or while this
        runner is full (then whether the others have room decides its offers).
        """
        exchange = self._exchange
        limiter = exchange.limiter
        free = 0 if limiter is None else int(limiter.available_tokens)
        if only_if_changed and free == self._announced_free and free > 0:
            return
        try:
            exchange.peer_free_slots = await exchange.offers.announce(
                exchange.runner_id, self._capacity, free, exchange.ttl
            )
        except StorageError as exc:
            logger.warning("sharing.announce_failed", error=str(exc))
            return
        self._announced_free = free
        exchange.announced.set()
        exchange.room_changed()

    async def _housekeeping(self) -> None:
        exchange = self._exchange
        await self._announce()
        try:
            await exchange.offers.renew_claims(
                exchange.runner_id, exchange.ttl, tuple(exchange.working)
            )
            await exchange.offers.tidy()
        except StorageError as exc:
            logger.warning("sharing.housekeeping_failed", error=str(exc))
        await self._keep_listening()
        # A wake-up may have been missed while the listener was down.
        exchange.offers_open = True
        await self._look()
        exchange.deliver(await exchange._take_results())

    async def _keep_listening(self) -> None:
        exchange = self._exchange
        self._listener = await kept_listening(
            self._listener,
            lambda: exchange.offers.listen(
                exchange.runner_id, on_offered=self._offered, on_done=self._done
            ),
            failed_event="sharing.listen_failed",
        )

    async def _look(self) -> None:
        exchange = self._exchange
        limiter = exchange.limiter
        if not exchange.accepting or not exchange.offers_open or limiter is None:
            return
        free = int(limiter.available_tokens)
        if free < 1:
            return  # slot_freed asks again
        limit = min(free, CLAIM_BATCH)
        try:
            claimed = await exchange.offers.claim(
                runner_id=exchange.runner_id,
                task_names=registry.task_names(),
                limit=limit,
                ttl=exchange.ttl,
                max_claims=MAX_CLAIMS,
            )
        except StorageError as exc:
            logger.warning("sharing.claim_failed", error=str(exc))
            return
        if len(claimed) < limit:
            exchange.offers_open = False
        for offer in claimed:
            exchange.stats.claimed += 1
            exchange.working.add(offer.task_execution_id)
            self._start_attempt(offer)
