"""`Mailbox[M]`: an actor's bounded queue of messages plus an unbounded priority lane.

A mailbox owns one anyio memory object stream pair. The user lane is bounded (a full
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

import contextlib
import math
from collections import deque
from typing import Any, Final, Generic, TypeVar

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .clock import Clock
from .envelope import Envelope
from .errors import ActorDeadError, MailboxClosedError

__all__ = ("Mailbox", "MailboxStatistics", "SystemMessage")

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


class _Wake(SystemMessage, frozen=True):
    """Sent through the user lane only to wake a receive loop that is waiting on it."""


WAKE: Final = _Wake()


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


class Mailbox(Generic[M]):
    """The message queue of one actor slot.

    Args:
        name: Name of the actor, used in error messages.
        capacity: Bound of the user lane; ``math.inf`` for unbounded.
        clock: The system clock (ask timeouts are measured on it).

    Raises:
        ValueError: If ``capacity`` is not a positive integer or ``math.inf``.
    """

    __slots__ = ("_recv", "_send", "_state", "_system", "_waiting", "clock", "name")

    def __init__(self, name: str, capacity: float, clock: Clock) -> None:
        if capacity != math.inf and (int(capacity) != capacity or capacity < 1):
            raise ValueError(
                "mailbox capacity must be a positive integer or math.inf, "
                f"not {capacity!r}"
            )
        self.name = name
        self.clock = clock
        send, recv = anyio.create_memory_object_stream[Any](capacity)
        self._send: MemoryObjectSendStream[Any] = send
        self._recv: MemoryObjectReceiveStream[Any] = recv
        self._system: deque[SystemMessage] = deque()
        self._state: int = OPEN
        # Set by the receive loop while it may be blocked on the user lane.
        self._waiting = False

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

    def put_nowait(self, item: Any) -> None:
        """Queue ``item`` without waiting.

        Raises:
            anyio.WouldBlock: If the user lane is full.
            MailboxClosedError: If the intake is closed.
            ActorDeadError: If the mailbox is closed for good.
        """
        if self._state:
            raise self._refusal()
        self._send.send_nowait(item)

    async def put(self, item: Any) -> None:
        """Queue ``item``, waiting while the user lane is full.

        Raises:
            MailboxClosedError: If the intake is closed.
            ActorDeadError: If the mailbox is or becomes closed for good.
        """
        if self._state:
            raise self._refusal()
        try:
            await self._send.send(item)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise self._refusal() from None

    def post_system(self, message: SystemMessage) -> None:
        """Queue a control message on the priority lane; never blocks.

        Raises:
            ActorDeadError: If the mailbox is closed for good.
        """
        if self._state == DEAD:
            raise self._refusal()
        self._system.append(message)
        self.wake()

    def wake(self) -> None:
        """Wake the receive loop if it is waiting for a user message."""
        if self._waiting and self._state != DEAD:
            self._waiting = False
            # A full lane means the loop will not block before it looks again.
            with contextlib.suppress(anyio.WouldBlock):
                self._send.send_nowait(WAKE)

    def close_intake(self) -> None:
        """Refuse new user messages; the actor drains the queued ones, then stops."""
        if self._state == OPEN:
            self._state = CLOSING
            self.wake()

    def close(self, cause: BaseException | None = None) -> None:
        """Close for good: refuse everything and fail every queued ask.

        Args:
            cause: The crash that ended the actor, attached to the failures.
        """
        if self._state == DEAD:
            return
        self._state = DEAD
        # Closing the sending side first withdraws blocked senders (they get
        # ActorDeadError) and leaves the buffer readable until it is empty.
        self._send.close()
        message = f"actor {self.name!r} stopped before handling the request"
        while True:
            try:
                item = self._recv.receive_nowait()
            except (anyio.EndOfStream, anyio.WouldBlock):
                break
            if type(item) is Envelope:
                item.fail(message, actor=self.name, cause=cause)
        self._recv.close()
        system = self._system
        while system:
            control = system.popleft()
            if control.reply is not None:
                control.reply.fail(
                    f"actor {self.name!r} stopped before handling the request",
                    actor=self.name,
                    cause=cause,
                )

    def statistics(self) -> MailboxStatistics:
        """Return a snapshot of the mailbox."""
        stats = self._send.statistics()
        return MailboxStatistics(
            capacity=stats.max_buffer_size,
            queued=stats.current_buffer_used,
            system_queued=len(self._system),
            senders_waiting=stats.tasks_waiting_send,
            state=_STATE_NAMES[self._state],
        )
