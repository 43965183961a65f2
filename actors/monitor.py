"""Supervision events and the `Monitor` protocol that observes them.

Every supervisor reports `ChildStarted`, `ChildExited`, `ChildRestarted` and
`SupervisorEscalated` to the actor system's monitor (like ``trio.abc.Instrument``):
logs, metrics and tests subscribe there. Events are frozen Structs; ``on_event`` is
called synchronously from the event loop and must not block.
"""

from __future__ import annotations

from typing import Protocol, TypeAlias

import msgspec

from .exit import ExitReason

__all__ = (
    "ChildExited",
    "ChildRestarted",
    "ChildStarted",
    "Monitor",
    "SupervisionEvent",
    "SupervisorEscalated",
)


class ChildStarted(msgspec.Struct, frozen=True, kw_only=True):
    """An incarnation finished ``on_start`` and is running.

    Attributes:
        supervisor: Name of the supervisor.
        child_id: The child's spec id.
        incarnation: 1 for the first start, plus one per restart.
    """

    supervisor: str
    child_id: str
    incarnation: int


class ChildExited(msgspec.Struct, frozen=True, kw_only=True):
    """An incarnation stopped (or failed to start, when ``during_start``).

    Attributes:
        supervisor: Name of the supervisor.
        child_id: The child's spec id.
        incarnation: The incarnation that stopped.
        reason: Why it stopped.
        during_start: True when it failed in its factory or ``on_start``.
    """

    supervisor: str
    child_id: str
    incarnation: int
    reason: ExitReason
    during_start: bool = False


class ChildRestarted(msgspec.Struct, frozen=True, kw_only=True):
    """The supervisor decided to restart a child; `ChildStarted` follows once it is up.

    Attributes:
        supervisor: Name of the supervisor.
        child_id: The child's spec id.
        incarnation: The incarnation that will start.
        delay: Seconds on the clock before it starts.
        restarts: Restarts counted in the intensity window (0 when a decider chose).
    """

    supervisor: str
    child_id: str
    incarnation: int
    delay: float = 0.0
    restarts: int = 0


class SupervisorEscalated(msgspec.Struct, frozen=True, kw_only=True):
    """A supervisor gave up because the restart intensity was exceeded.

    Attributes:
        supervisor: Name of the supervisor.
        child_id: The child whose exit exceeded the intensity.
        incarnation: That child's incarnation.
        restarts: Restarts counted in the window, including the refused one.
        period: The window, in seconds.
        reason: The child's exit reason.
    """

    supervisor: str
    child_id: str
    incarnation: int
    restarts: int
    period: float
    reason: ExitReason


#: Every event a monitor can receive.
SupervisionEvent: TypeAlias = (
    ChildStarted | ChildExited | ChildRestarted | SupervisorEscalated
)


class Monitor(Protocol):
    """Receives supervision events."""

    def on_event(self, event: SupervisionEvent) -> None:
        """Observe one event; called synchronously, must not block or raise."""
        ...
