"""Deterministic simulation: a seeded transport and a clock that moves when all is idle.

For testing a whole actor system in one process, on one event loop, repeatably:

* `SimTransport` is a `Tap` (``actors.mailbox``): installed with
  `SimTransport.installed`, every mailbox made meanwhile hands it its traffic. Driven
  by a `SimPolicy` (seeded randomness, see `RandomPolicy`), it delays messages on a
  `ManualClock`, crashes an actor just before or just after it handles a message, or
  *halts* the whole system at such a point (a process killed: nothing more is
  delivered or handled, and the owner's ``on_halt`` callback stops the rest of the
  world). It records a `trace` of what was delivered, handled and injected, so two
  runs of one seed can be compared.
* `drive_clock` advances a `ManualClock` to its next deadline whenever no task on the
  loop can run. Unlike `ManualClock.autojump` it never polls in real time, so the
  order of events depends only on the program and the seed.

Which reorderings are legal. The toolkit's mailboxes queue a message when it is sent,
so an actor receives its messages in the order they were sent, whoever sent them; the
toolkit documents only per-sender order, but code built on it (and on immediate
delivery) may rely on more: a message sent *because* another was received arrives
after it (causal order). The transport therefore keeps, per receiver, the order in
which messages were sent and only delays them (``ORDER_SENT``, the default): each
receiver sees exactly the sequence the real mailbox would hold, only later, so
batching, interleaving with timers and the progress of other actors change while no
impossible order appears. ``ORDER_PER_SENDER`` delays each message independently and
keeps only per-sender order (what the toolkit promises, as Erlang does): messages
from different senders may overtake each other even when one caused the other. It is
a stress mode for code that must not rely on causal delivery; a failure there is a
finding about that reliance, not necessarily a bug reachable with this toolkit.

Messages are held only for unbounded mailboxes: in a bounded one a held message would
take room that the real mailbox gives to a later send, so bounded mailboxes get their
messages at once (crashes and halts still apply). Control messages (the system lane:
stop requests, supervision notices) are never delayed.

A crash is an `InjectFault` on the actor's control lane, so the supervisor sees an
ordinary crash; "before" leaves the message at the head of the mailbox (the next
incarnation handles it, as the mailbox belongs to the slot), "after" lets the handler
finish first. A dropped message is what a halt produces: everything in memory is gone.

The toolkit knows nothing of what runs on it: decisions are made on actor names and
message type names only.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fnmatch
import math
import random
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import anyio

from .actor import InjectFault, current_actor
from .clock import ManualClock
from .envelope import Envelope
from .mailbox import NOTHING, Mailbox, set_tap

__all__ = (
    "ORDER_PER_SENDER",
    "ORDER_SENT",
    "Fault",
    "FaultRule",
    "RandomPolicy",
    "SimPolicy",
    "SimTransport",
    "SimulatedCrash",
    "drive_clock",
)

ORDER_SENT: Final = "sent"
"""Each receiver gets its messages in the order they were sent (the default)."""

ORDER_PER_SENDER: Final = "per-sender"
"""Only messages of one sender keep their order (stress mode, see the module)."""

TraceEvent = tuple[Any, ...]


class Fault(enum.Enum):
    """What to inject when an actor is about to handle a message."""

    CRASH_BEFORE = "crash-before"
    """Crash the actor; the message stays at the head of its mailbox."""
    CRASH_AFTER = "crash-after"
    """Let the actor handle the message, then crash it."""
    HALT_BEFORE = "halt-before"
    """Halt the whole system before the message is handled."""
    HALT_AFTER = "halt-after"
    """Halt the whole system once the message has been handled."""


class SimulatedCrash(Exception):
    """The error an injected crash raises inside the actor."""


class SimPolicy(Protocol):
    """Decides, per message, how the transport treats it."""

    def delay(self, receiver: str, message: object) -> float | None:
        """Seconds on the clock to hold ``message`` (0: a loop tick), None: none."""
        ...

    def fault(self, receiver: str, message: object) -> Fault | None:
        """The fault to inject as ``receiver`` is about to handle ``message``."""
        ...


@dataclass
class FaultRule:
    """One kind of fault and where it may strike.

    Attributes:
        fault: What to inject.
        probability: Chance per matching message.
        actors: ``fnmatch`` patterns of actor names it may strike.
        messages: Message type names it may strike; empty: any.
        budget: How many times it may strike in all.
    """

    fault: Fault
    probability: float
    actors: Sequence[str] = ("*",)
    messages: Sequence[str] = ()
    budget: int = 1
    used: int = field(default=0, init=False)

    def matches(self, receiver: str, message: object) -> bool:
        """Whether the rule applies to ``receiver`` handling ``message``."""
        if self.used >= self.budget:
            return False
        if self.messages and type(message).__name__ not in self.messages:
            return False
        return any(fnmatch.fnmatchcase(receiver, p) for p in self.actors)


class RandomPolicy:
    """A `SimPolicy` that draws every decision from one seeded ``random.Random``.

    Args:
        rng: The source of every decision (seed it for a reproducible run).
        delay_probability: Chance that a message is held.
        max_delay: Upper bound of a hold, in seconds on the clock; a quarter of the
            holds are a loop tick only.
        faults: The faults that may strike, each within its budget.
        delay_actors: ``fnmatch`` patterns of receivers whose messages may be held.
    """

    def __init__(
        self,
        rng: random.Random,
        *,
        delay_probability: float = 0.0,
        max_delay: float = 0.01,
        faults: Sequence[FaultRule] = (),
        delay_actors: Sequence[str] = ("*",),
    ) -> None:
        if not 0.0 <= delay_probability <= 1.0:
            raise ValueError(
                f"delay_probability must be within [0, 1], not {delay_probability!r}"
            )
        if not max_delay >= 0 or math.isinf(max_delay):
            raise ValueError(f"max_delay must be finite and >= 0, not {max_delay!r}")
        self.rng = rng
        self.delay_probability = delay_probability
        self.max_delay = max_delay
        self.faults = list(faults)
        self.delay_actors = tuple(delay_actors)

    def delay(self, receiver: str, message: object) -> float | None:
        """Hold with ``delay_probability``: a tick, or up to ``max_delay`` seconds."""
        if self.delay_probability == 0.0 or not any(
            fnmatch.fnmatchcase(receiver, p) for p in self.delay_actors
        ):
            return None
        rng = self.rng
        if rng.random() >= self.delay_probability:
            return None
        if rng.random() < 0.25:
            return 0.0
        return rng.uniform(0.0, self.max_delay)

    def fault(self, receiver: str, message: object) -> Fault | None:
        """The first matching rule that strikes (one draw per matching rule)."""
        for rule in self.faults:
            if rule.matches(receiver, message) and self.rng.random() < rule.probability:
                rule.used += 1
                return rule.fault
        return None


class _Held:
    """A message the transport holds for a receiver."""

    __slots__ = ("item", "ready")

    def __init__(self, item: Any) -> None:
        self.item = item
        self.ready = False


def _unwrap(item: Any) -> Any:
    return item.message if type(item) is Envelope else item


def _sender_name() -> str:
    actor = current_actor.get()
    if actor is None or actor._ref is None:
        return "-"
    return actor._ref.name


class SimTransport:
    """The simulation's `Tap`: holds, crashes and halts by its policy; see the module.

    Args:
        clock: The system's clock (holds are measured on it).
        policy: The decisions; a `RandomPolicy` for seeded exploration.
        order: `ORDER_SENT` (default) or `ORDER_PER_SENDER`.
        on_halt: Called once when a halt strikes; it must stop the rest of the world
            (cancel the system, make its external resources refuse further work).

    Attributes:
        trace: Every delivery, handling and injection, in order: tuples of the clock
            time, the event kind, actor names and message type names.
        halted: Whether a halt struck (until `revive`).
        injected: How many faults struck, by kind.
    """

    def __init__(
        self,
        clock: ManualClock,
        policy: SimPolicy,
        *,
        order: str = ORDER_SENT,
        on_halt: Callable[[], None] | None = None,
    ) -> None:
        if order not in (ORDER_SENT, ORDER_PER_SENDER):
            raise ValueError(
                f"order must be {ORDER_SENT!r} or {ORDER_PER_SENDER!r}, not {order!r}"
            )
        self.clock = clock
        self.policy = policy
        self.order = order
        self.on_halt = on_halt
        self.trace: list[TraceEvent] = []
        self.halted = False
        self.injected: dict[Fault, int] = dict.fromkeys(Fault, 0)
        # Per channel (receiver, or receiver and sender), the messages held, oldest
        # first; a message leaves only once it and everything before it are ready.
        self._held: dict[tuple[Mailbox[Any], str], deque[_Held]] = {}
        self._after: dict[Mailbox[Any], Fault] = {}
        self._timers: list[Any] = []
        self._halt_event: anyio.Event | None = None

    # -- installation ----------------------------------------------------------

    @contextlib.contextmanager
    def installed(self) -> Iterator[SimTransport]:
        """Intercept the mailboxes made inside the block."""
        set_tap(self)
        try:
            yield self
        finally:
            set_tap(None)

    def revive(self) -> None:
        """Forget a halt and everything held, for the next system on this transport."""
        self.halted = False
        self._held.clear()
        self._after.clear()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._halt_event is not None:
            self._halt_event.set()
            self._halt_event = None

    def _record(self, *event: Any) -> None:
        self.trace.append((round(self.clock.monotonic(), 9), *event))

    # -- the Tap protocol ------------------------------------------------------

    def deliver(self, mailbox: Mailbox[Any], item: Any) -> None:
        """Queue ``item`` now or hold it, by the policy; nothing once halted."""
        sender = _sender_name()
        message = _unwrap(item)
        kind = type(message).__name__
        if self.halted:
            self._record("lost", sender, mailbox.name, kind)
            return
        key = (mailbox, sender if self.order == ORDER_PER_SENDER else "")
        channel = self._held.get(key)
        delay = None
        if mailbox._capacity == math.inf:
            delay = self.policy.delay(mailbox.name, message)
        if delay is None and not channel:
            self._record("send", sender, mailbox.name, kind)
            mailbox.accept(item)
            return
        held = _Held(item)
        if channel is None:
            channel = self._held[key] = deque()
        channel.append(held)
        self._record("hold", sender, mailbox.name, kind, delay)

        def ready() -> None:
            held.ready = True
            self._release(key)

        if not delay:
            # Zero or none (behind a held message): ready at the next loop tick.
            asyncio.get_running_loop().call_soon(ready)
        else:
            self._timers.append(
                self.clock.call_at(self.clock.monotonic() + delay, ready)
            )

    def _release(self, key: tuple[Mailbox[Any], str]) -> None:
        if self.halted:
            return
        channel = self._held.get(key)
        mailbox = key[0]
        while channel and channel[0].ready:
            item = channel.popleft().item
            self._record("release", mailbox.name, type(_unwrap(item)).__name__)
            mailbox.accept(item)
        if channel is not None and not channel:
            del self._held[key]

    def flush(self, mailbox: Mailbox[Any]) -> None:
        """Queue everything held for ``mailbox`` at once, in channel order."""
        for key in [k for k in self._held if k[0] is mailbox]:
            for held in self._held.pop(key):
                mailbox.accept(held.item)

    async def get(self, mailbox: Mailbox[Any]) -> Any:
        """Receive for ``mailbox``'s actor, injecting the policy's faults."""
        if self.halted:
            await self._halted()
        pending = self._after.pop(mailbox, None)
        if pending is not None:
            # The handler of the message the fault was drawn for has returned.
            self._strike(mailbox, pending, "after")
            if self.halted:
                await self._halted()
            return NOTHING
        item = await mailbox.receive()
        if item is NOTHING:
            return item
        if self.halted:
            mailbox.put_back(item)
            await self._halted()
        message = _unwrap(item)
        kind = type(message).__name__
        fault = self.policy.fault(mailbox.name, message) if mailbox.is_open else None
        if fault is Fault.CRASH_BEFORE or fault is Fault.HALT_BEFORE:
            mailbox.put_back(item)
            self._record(fault.value, mailbox.name, kind)
            self._strike(mailbox, fault, kind)
            if self.halted:
                await self._halted()
            return NOTHING
        self._record("handle", mailbox.name, kind)
        if fault is not None:
            self._record(fault.value, mailbox.name, kind)
            self._after[mailbox] = fault
        return item

    def _strike(self, mailbox: Mailbox[Any], fault: Fault, what: str) -> None:
        self.injected[fault] += 1
        if fault is Fault.CRASH_BEFORE or fault is Fault.CRASH_AFTER:
            mailbox.post_system(
                InjectFault(
                    error=SimulatedCrash(
                        f"simulated crash of {mailbox.name!r} ({fault.value} {what})"
                    )
                )
            )
            return
        self.halt()

    def halt(self) -> None:
        """Halt the world now: nothing more is delivered or handled (see the module)."""
        if self.halted:
            return
        self.halted = True
        self._record("halt")
        self._held.clear()
        self._after.clear()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self.on_halt is not None:
            self.on_halt()

    async def _halted(self) -> None:
        # A halted world handles nothing: wait until cancelled (or revived).
        if self._halt_event is None:
            self._halt_event = anyio.Event()
        await self._halt_event.wait()


async def drive_clock(
    clock: ManualClock,
    *,
    on_idle: Callable[[], None] | None = None,
    until: float = math.inf,
) -> None:
    """Advance ``clock`` to its next deadline whenever no other task can run; forever.

    Start it in a task group next to the system under test and cancel it afterwards.
    Idleness is read from the asyncio loop's queue of ready callbacks, never from real
    time, so a run is repeatable. With nothing runnable and no deadline left,
    ``on_idle`` is called (a deadlock, or the end of the work), and the driver waits
    for a new deadline.

    Args:
        clock: The clock to advance.
        on_idle: Called each time the system has nothing left to do.
        until: Clock time not to advance beyond; once the next deadline lies past it,
            ``on_idle`` is called as if none were left.

    Raises:
        RuntimeError: If not running on asyncio.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError("drive_clock needs the asyncio backend") from None
    ready = loop._ready  # type: ignore[attr-defined]
    while True:
        await asyncio.sleep(0)
        if ready:
            continue
        deadline = clock.next_deadline()
        if deadline is None or deadline > until:
            if on_idle is not None:
                on_idle()
            changed = clock._changed = anyio.Event()
            await changed.wait()
            clock._changed = None
            continue
        clock.advance(max(0.0, deadline - clock.monotonic()))
