"""`ActorRef[M]`: the handle other code uses to talk to an actor (tell and ask).

A ref points at a supervisor's child slot, not at one incarnation, so it stays valid
across restarts (Akka semantics): messages sent while a child restarts wait in its
mailbox for the next incarnation. When the slot is finally stopped, every send raises
`ActorDeadError`.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from .clock import deadline_scope
from .envelope import Envelope
from .errors import AskTimeout
from .mailbox import Mailbox

__all__ = ("ActorRef",)

M = TypeVar("M")


class ActorRef(Generic[M]):
    """A typed handle to an actor.

    Refs are created by supervisors; user code gets them from ``Actor.ref``,
    ``Supervisor.start_child``, ``Supervisor.ref_of`` or ``ActorSystem.spawn``.

    Attributes:
        name: The actor's path, e.g. ``"root/executor"``.
    """

    __slots__ = ("_mailbox", "name")

    def __init__(self, mailbox: Mailbox[M]) -> None:
        self._mailbox = mailbox
        self.name = mailbox.name

    @property
    def is_alive(self) -> bool:
        """Whether the actor's slot is still in service (true while it restarts)."""
        return not self._mailbox.is_dead

    async def send(self, message: M) -> None:
        """Deliver ``message`` (tell), waiting while the mailbox is full.

        Messages from one sender are handled in the order they were sent.

        Raises:
            MailboxClosedError: If the actor is shutting down (its intake is closed).
            ActorDeadError: If the actor is stopped, or stops while this send waits.
        """
        await self._mailbox.put(message)

    def send_nowait(self, message: M) -> None:
        """Deliver ``message`` (tell) without waiting.

        Raises:
            anyio.WouldBlock: If the mailbox is full.
            MailboxClosedError: If the actor is shutting down.
            ActorDeadError: If the actor is stopped.
        """
        self._mailbox.put_nowait(message)

    async def ask(self, message: M, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """Send ``message`` as a request and wait for the reply.

        The reply is the value ``handle(message)`` returned.

        Args:
            message: The request.
            timeout: Seconds on the system `Clock` (not anyio's, hence a parameter) to
                wait for the reply, including any wait for mailbox space; None waits as
                long as the actor lives.

        Returns:
            The actor's reply.

        Raises:
            AskTimeout: If no reply arrived within ``timeout``.
            MailboxClosedError: If the actor is shutting down.
            ActorDeadError: If the actor is stopped, or stops or crashes before replying
                (``__cause__`` is the crash, when there is one).
        """
        mailbox = self._mailbox
        envelope = Envelope(message)
        if timeout is None:
            await mailbox.put(envelope)
            await envelope.wait()
            return envelope.result()
        clock = mailbox.clock
        async with deadline_scope(clock, clock.monotonic() + timeout):
            await mailbox.put(envelope)
            await envelope.wait()
        if not envelope.done:
            raise AskTimeout(
                f"actor {self.name!r} did not reply within {timeout:g}s",
                actor=self.name,
                timeout=timeout,
            )
        return envelope.result()

    def __repr__(self) -> str:
        state = "alive" if self.is_alive else "dead"
        return f"<ActorRef {self.name!r} {state}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and other._mailbox is self._mailbox

    def __hash__(self) -> int:
        return id(self._mailbox)
