"""Errors raised by the actor toolkit, one tree rooted at `ActorError`.

```
ActorError(Exception)
├── ActorDeadError          send/ask to an actor that has stopped; queued asks fail too
├── MailboxClosedError      send to a mailbox whose intake is closed (graceful shutdown)
├── AskTimeout              no reply within the timeout
├── ChildStartError         a child failed before it was started; carries the child id
└── SupervisorEscalation    restart intensity exceeded; carries supervisor id, child id,
                            restarts and period; ``__cause__`` = the last child failure
```

Trio's split between "you closed it" and "it broke under you" is kept:
`MailboxClosedError` means the owner of the actor system closed the intake (the actor is
still draining what it had), `ActorDeadError` means the actor is gone. Each class
docstring is its default message.
"""

from __future__ import annotations

__all__ = (
    "ActorDeadError",
    "ActorError",
    "AskTimeout",
    "ChildStartError",
    "MailboxClosedError",
    "SupervisorEscalation",
)


class ActorError(Exception):
    """An error of the actor toolkit."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message if message is not None else self.__doc__)


class ActorDeadError(ActorError):
    """The actor is stopped: it cannot take messages or answer requests."""

    def __init__(self, message: str | None = None, *, actor: str | None = None) -> None:
        super().__init__(message)
        #: Name of the actor (its `ActorRef.name`), when known.
        self.actor = actor


class MailboxClosedError(ActorError):
    """The mailbox no longer accepts messages: its actor is shutting down."""

    def __init__(self, message: str | None = None, *, actor: str | None = None) -> None:
        super().__init__(message)
        #: Name of the actor whose intake is closed.
        self.actor = actor


class AskTimeout(ActorError):
    """No reply arrived within the timeout."""

    def __init__(
        self,
        message: str | None = None,
        *,
        actor: str | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__(message)
        #: Name of the actor that was asked.
        self.actor = actor
        #: The timeout, in seconds on the system's `Clock`.
        self.timeout = timeout


class ChildStartError(ActorError):
    """A child failed while starting (in its factory or its ``on_start``)."""

    def __init__(self, child_id: str, message: str | None = None) -> None:
        super().__init__(
            message if message is not None else f"child {child_id!r} failed to start"
        )
        #: Id of the child (its `ChildSpec.id`).
        self.child_id = child_id


class SupervisorEscalation(ActorError):
    """A supervisor gave up: its children needed more restarts than allowed."""

    def __init__(
        self,
        supervisor: str,
        child_id: str,
        restarts: int,
        period: float,
        message: str | None = None,
    ) -> None:
        super().__init__(
            message
            if message is not None
            else (
                f"supervisor {supervisor!r} gave up after child {child_id!r} failed: "
                f"{restarts} restarts within {period:g}s exceed its intensity"
            )
        )
        #: Name of the supervisor that gave up.
        self.supervisor = supervisor
        #: Id of the child whose exit exceeded the intensity.
        self.child_id = child_id
        #: Restarts counted in the window, including the refused one.
        self.restarts = restarts
        #: Length of the intensity window, in seconds.
        self.period = period
