"""Child specs and supervisor flags: what a supervisor starts and how it treats exits.

`ChildSpec` names a child, gives the factory that builds each incarnation, its `Restart`
type and its `ShutdownPolicy`. `SupervisorFlags` choose the `Strategy`, the restart
intensity (at most ``intensity`` restarts within ``period`` seconds) and an optional
`Backoff` between restarts. `RestartDecision` and `RestartDecider` are the hook through
which a caller drives restarts from its own retry policy.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import msgspec

from .backoff import Backoff
from .exit import ExitReason

if TYPE_CHECKING:
    from .actor import Actor

__all__ = (
    "ChildSpec",
    "Restart",
    "RestartDecider",
    "RestartDecision",
    "ShutdownPolicy",
    "Strategy",
    "SupervisorFlags",
)


class Strategy(enum.Enum):
    """Which children restart when one of them has to."""

    #: Only the child that exited.
    ONE_FOR_ONE = "one_for_one"
    #: Every child: the others are stopped (reverse order), then all start again in
    #: order.
    ONE_FOR_ALL = "one_for_all"
    #: The child that exited and every child started after it.
    REST_FOR_ONE = "rest_for_one"


class Restart(enum.Enum):
    """When a child is restarted after it exits."""

    #: Always.
    PERMANENT = "permanent"
    #: Only after an abnormal exit (`Crashed`).
    TRANSIENT = "transient"
    #: Never; the child is removed once it exits.
    TEMPORARY = "temporary"


class ShutdownPolicy(msgspec.Struct, frozen=True):
    """How a supervisor stops a child. Build one with `brutal`, `timeout` or `infinity`.

    Attributes:
        kind: ``"brutal"``, ``"timeout"`` or ``"infinity"``.
        seconds: The grace period for ``"timeout"``.
    """

    kind: Literal["brutal", "timeout", "infinity"]
    seconds: float = 0.0

    @staticmethod
    def brutal() -> ShutdownPolicy:
        """Cancel the child at once."""
        return _BRUTAL

    @staticmethod
    def timeout(seconds: float) -> ShutdownPolicy:
        """Ask the child to stop, wait up to ``seconds`` on the clock, then cancel it.

        Raises:
            ValueError: If ``seconds`` is negative or not a number.
        """
        if not seconds >= 0:
            raise ValueError(f"shutdown timeout must be >= 0, not {seconds!r}")
        return ShutdownPolicy("timeout", float(seconds))

    @staticmethod
    def infinity() -> ShutdownPolicy:
        """Ask the child to stop and wait as long as it takes (for supervisors)."""
        return _INFINITY

    @property
    def grace(self) -> float:
        """Seconds granted before cancellation (0 for brutal, inf for infinity)."""
        if self.kind == "brutal":
            return 0.0
        if self.kind == "infinity":
            return math.inf
        return self.seconds


_BRUTAL = ShutdownPolicy("brutal")
_INFINITY = ShutdownPolicy("infinity")


class ChildSpec(msgspec.Struct, frozen=True, kw_only=False):
    """What a supervisor needs to run a child.

    Attributes:
        id: Unique among the supervisor's current children.
        factory: Builds a fresh actor for each incarnation.
        restart: When the child is restarted.
        shutdown: How the child is stopped.
    """

    id: str
    factory: Callable[[], Actor[Any]]
    restart: Restart = Restart.PERMANENT
    shutdown: ShutdownPolicy = ShutdownPolicy("timeout", 5.0)


class SupervisorFlags(msgspec.Struct, frozen=True, kw_only=True):
    """A supervisor's restart policy.

    Attributes:
        strategy: Which children restart together.
        intensity: Restarts allowed within ``period``; one more escalates.
        period: Length of the intensity window, in seconds.
        backoff: Delay before each rule-based restart (none by default, as in OTP).
    """

    strategy: Strategy = Strategy.ONE_FOR_ONE
    intensity: int = 3
    period: float = 5.0
    backoff: Backoff | None = None

    def __post_init__(self) -> None:
        if self.intensity < 0:
            raise ValueError(f"intensity must be >= 0, not {self.intensity!r}")
        if not self.period > 0:
            raise ValueError(f"period must be > 0, not {self.period!r}")


class RestartDecision(msgspec.Struct, frozen=True):
    """A decider's verdict on a child that exited.

    Attributes:
        restart: Whether to start a new incarnation.
        delay: Seconds on the clock to wait first (the supervisor keeps serving).
    """

    restart: bool
    delay: float = 0.0


#: Called as ``decider(child_id, reason, incarnation)`` when a child exits; returning
#: None applies the normal rules. Its decisions do not count toward restart intensity.
RestartDecider: TypeAlias = Callable[
    [str, ExitReason, int], Awaitable[RestartDecision | None]
]
