"""`Mailbox[M]`: an actor's bounded queue of messages plus an unbounded priority lane.

The user lane is bounded (a full
mailbox makes `put` wait, which is the backpressure), the system lane is a plain deque
that the receive loop serves first and that never blocks (supervision notices must not
wait behind user traffic). The mailbox belongs to a supervisor's child *slot*, not to
one incarnation, so messages still queued when a child restarts are consumed by the next
one.

Closing has two steps. `close_intake` (graceful shutdown) refuses new messages with
`MailboxClosedError` while the actor drains what it has. `close` (the slot is finally
stopped) refuses everything with `ActorDeadError`, fails every queued ask and wakes
every blocked sender with the same error, so nothing waits on a dead actor.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Final, Generic, Protocol, TypeVar

import anyio
import msgspec

from ._backend import checkpoint, new_event
from .clock import Clock
from .envelope import Envelope
from .errors import ActorDeadError, MailboxClosedError

__all__ = ("Mailbox", "MailboxStatistics", "SystemMessage", "Tap")

M = TypeVar("M")

#: Mailbox states; ints because the receive loop compares them per message.
OPEN: Final = 0
CLOSING: Final = 1
DEAD: Final = 2

_STATE_NAMES: Final = ("open", "closing", "dead")


class SystemMessage(msgspec.Struct, frozen=True):
    """Base of the toolkit's own control messages (served before user messages).

    Attributes:
        reply: Where the answer goes, for control messages that are requests.
    """

    reply: Envelope | None = None


class MailboxStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a mailbox.

    Attributes:
        capacity: Bound of the user lane (``math.inf`` when unbounded).
        queued: Messages waiting in the user lane.
        system_queued: Control messages waiting in the system lane.
        senders_waiting: Senders blocked by backpressure.
        state: ``"open"``, ``"closing"`` or ``"dead"``.
    """

    capacity: float
    queued: int
    system_queued: int
    senders_waiting: int
    state: str


class _Sender:
    """A sender blocked by backpressure: its message and how the wait ended."""

    __slots__ = ("event", "item", "state")

    def __init__(self, item: Any, event: anyio.Event) -> None:
        self.item = item
        self.event = event
        self.state = _WAITING


# _Sender states.
_WAITING: Final = 0
_ACCEPTED: Final = 1
_REFUSED: Final = 2

#: What `Mailbox.get` returns when it was woken without a user message.
NOTHING: Final[Any] = object()

#: Most messages `Mailbox.get` returns in a row without a checkpoint.
BURST: Final = 16


class Tap(Protocol):
    """An interception point for message traffic (`actors.simulation` installs one).

    A mailbox made while a tap is installed hands it every user message that finds
    room in the queue (instead of queueing it) and every wait of its actor's
    receive loop (`get`). The tap owns the consequences: it queues what it was
    handed with `Mailbox.accept`, now or later, and receives with
    `Mailbox.receive`. Mailboxes made without a tap pay one attribute test per
    send and per receive.
    """

    def deliver(self, mailbox: Mailbox[Any], item: Any) -> None:
        """Queue ``item`` now, later, or (once the mailbox is closed) never."""
        ...

    async def get(self, mailbox: Mailbox[Any]) -> Any:
        """Stand in for `Mailbox.get` (the receive loop's wait for a message).

        Returns the next user message or `NOTHING`; returning `NOTHING` without
        waiting is allowed only with a control message queued for the loop.
        """
        ...

    def flush(self, mailbox: Mailbox[Any]) -> None:
        """Queue at once whatever is held for ``mailbox`` (it is about to close)."""
        ...


_tap: Tap | None = None
"""The tap new mailboxes get; set only by `actors.simulation`."""


def set_tap(tap: Tap | None) -> None:
    """Install ``tap`` for mailboxes made from now on (None: stop intercepting)."""
    global _tap
    _tap = tap


class Mailbox(Generic[M]):
    """The message queue of one actor slot.

    The user lane is a deque with one waiting receiver (the actor's loop) and a
    queue of blocked senders; a memory object stream would detect the backend and
    allocate a waiter on every receive.

    Args:
        name: Name of the actor, used in error messages.
        capacity: Bound of the user lane; ``math.inf`` for unbounded.
        clock: The system clock (ask timeouts are measured on it).

    Raises:
        ValueError: If ``capacity`` is not a positive integer or ``math.inf``.
    """

    __slots__ = (
        "_capacity",
        "_queue",
        "_receiver",
        "_senders",
        "_state",
        "_streak",
        "_system",
        "_tap",
        "clock",
        "name",
    )

    def __init__(self, name: str, capacity: float, clock: Clock) -> None:
        if capacity != math.inf and (int(capacity) != capacity or capacity < 1):
            raise ValueError(
                "mailbox capacity must be a positive integer or math.inf, "
                f"not {capacity!r}"
            )
        self.name = name
        self.clock = clock
        self._capacity = capacity
        self._queue: deque[Any] = deque()
        self._senders: deque[_Sender] = deque()
        self._system: deque[SystemMessage] = deque()
        self._state: int = OPEN
        # Messages returned in a row without a checkpoint (see get).
        self._streak = 0
        # The receive loop's wake-up while it waits on the user lane.
        self._receiver: anyio.Event | None = None
        self._tap = _tap

    @property
    def is_open(self) -> bool:
        """Whether the mailbox accepts new user messages."""
        return self._state == OPEN

    @property
    def is_dead(self) -> bool:
        """Whether the mailbox has been closed for good."""
        return self._state == DEAD

    def _refusal(self) -> Exception:
        if self._state == DEAD:
            return ActorDeadError(f"actor {self.name!r} is stopped", actor=self.name)
        return MailboxClosedError(
            f"actor {self.name!r} is shutting down and accepts no new messages",
            actor=self.name,
        )

    def _notify(self) -> None:
        receiver = self._receiver
        if receiver is not None:
            self._receiver = None
            receiver.set()

    def put_nowait(self, item: Any) -> None:
        """Queue ``item`` without waiting.

        Raises:
            anyio.WouldBlock: If the user lane is full.
            MailboxClosedError: If the intake is closed.
            ActorDeadError: If the mailbox is closed for good.
        """
        if self._state:
            raise self._refusal()
        queue = self._queue
        if len(queue) >= self._capacity:
            raise anyio.WouldBlock
        if self._tap is not None:
            self._tap.deliver(self, item)
            return
        queue.append(item)
        self._notify()

    async def put(self, item: Any) -> None:
        """Queue ``item``, waiting while the user lane is full.

        Raises:
            MailboxClosedError: If the intake is closed.
            ActorDeadError: If the mailbox is or becomes closed for good.
        """
        if self._state:
            raise self._refusal()
        # Sending is a checkpoint even when there is room, as with a stream.
        await checkpoint()
        if self._state:
            raise self._refusal()
        queue = self._queue
        if len(queue) < self._capacity and not self._senders:
            if self._tap is not None:
                self._tap.deliver(self, item)
                return
            queue.append(item)
            self._notify()
            return
        sender = _Sender(item, new_event())
        self._senders.append(sender)
        try:
            await sender.event.wait()
        finally:
            if sender.state == _WAITING:
                # Cancelled while waiting: withdraw the message.
                self._senders.remove(sender)
        if sender.state == _REFUSED:
            raise self._refusal()

    def _take(self) -> Any:
        """Pop the next user message (there is one) and admit a blocked sender."""
        queue = self._queue
        item = queue.popleft()
        senders = self._senders
        if senders:
            sender = senders.popleft()
            queue.append(sender.item)
            sender.state = _ACCEPTED
            sender.event.set()
        return item

    async def get(self) -> Any:
        """Return the next user message, waiting while there is none.

        A checkpoint at least every `BURST` messages even while messages are
        waiting (the loop stays cancellable and fair); in between, a waiting
        message is returned at once. Returns `NOTHING` when woken without one
        (`wake`, `close`).
        """
        if self._tap is not None:
            return await self._tap.get(self)
        # Inline rather than a call to `receive`: one await less per message.
        if self._queue:
            # A checkpoint per message was a trip through the event loop for
            # every message of a busy actor: most of what a message cost.
            streak = self._streak + 1
            if streak < BURST:
                self._streak = streak
                return self._take()
            self._streak = 0
            await checkpoint()
            if self._queue:
                return self._take()
        if self._state == DEAD:
            return NOTHING
        self._streak = 0
        event = self._receiver = new_event()
        try:
            await event.wait()
        finally:
            self._receiver = None
        return self._take() if self._queue else NOTHING

    async def receive(self) -> Any:
        """What `get` does without a tap (for a `Tap`'s own ``get``)."""
        if self._queue:
            await checkpoint()
            if self._queue:
                return self._take()
        if self._state == DEAD:
            return NOTHING
        event = self._receiver = new_event()
        try:
            await event.wait()
        finally:
            self._receiver = None
        return self._take() if self._queue else NOTHING

    def put_back(self, item: Any) -> None:
        """Return a message a `Tap` received to the head of the queue."""
        self._queue.appendleft(item)

    def accept(self, item: Any) -> None:
        """Queue ``item`` a `Tap` held; past capacity and closed intake alike.

        The tap accepted it while the mailbox had room and was open, so it is
        queued as the send would have queued it then. Into a dead mailbox an ask
        fails as `close` fails queued asks, and a tell is dropped.
        """
        if self._state == DEAD:
            if type(item) is Envelope:
                item.fail(
                    f"actor {self.name!r} stopped before handling the request",
                    actor=self.name,
                )
            return
        self._queue.append(item)
        self._notify()

    def get_nowait(self) -> Any:
        """Return the next user message.

        Raises:
            anyio.WouldBlock: If there is none.
        """
        if not self._queue:
            raise anyio.WouldBlock
        return self._take()

    def post_system(self, message: SystemMessage) -> None:
        """Queue a control message on the priority lane; never blocks.

        Raises:
            ActorDeadError: If the mailbox is closed for good.
        """
        if self._state == DEAD:
            raise self._refusal()
        self._system.append(message)
        self._notify()

    def wake(self) -> None:
        """Wake the receive loop if it is waiting for a user message."""
        self._notify()

    def close_intake(self) -> None:
        """Refuse new user messages; the actor drains the queued ones, then stops."""
        if self._tap is not None:
            self._tap.flush(self)
        if self._state == OPEN:
            self._state = CLOSING
            self._notify()

    def close(self, cause: BaseException | None = None) -> None:
        """Close for good: refuse everything and fail every queued ask.

        Args:
            cause: The crash that ended the actor, attached to the failures.
        """
        if self._state == DEAD:
            return
        if self._tap is not None:
            # Held messages were accepted before the close: they fail with the rest.
            self._tap.flush(self)
        self._state = DEAD
        # Blocked senders are withdrawn first (they get ActorDeadError); their
        # messages never entered the queue.
        senders = self._senders
        while senders:
            sender = senders.popleft()
            sender.state = _REFUSED
            sender.event.set()
        message = f"actor {self.name!r} stopped before handling the request"
        queue = self._queue
        while queue:
            item = queue.popleft()
            if type(item) is Envelope:
                item.fail(message, actor=self.name, cause=cause)
        system = self._system
        while system:
            control = system.popleft()
            if control.reply is not None:
                control.reply.fail(
                    f"actor {self.name!r} stopped before handling the request",
                    actor=self.name,
                    cause=cause,
                )
        self._notify()

    def statistics(self) -> MailboxStatistics:
        """Return a snapshot of the mailbox."""
        return MailboxStatistics(
            capacity=self._capacity,
            queued=len(self._queue),
            system_queued=len(self._system),
            senders_waiting=len(self._senders),
            state=_STATE_NAMES[self._state],
        )
