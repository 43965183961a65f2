"""A small, generic, typed actor and supervision toolkit on anyio.

Actors (`Actor`, `ActorRef`) own their state and a bounded mailbox; supervisors
(`Supervisor`, `ChildSpec`, `SupervisorFlags`) restart them OTP-style; an `ActorSystem`
owns the root of the tree; a `Clock` makes every timing testable. The toolkit knows
nothing of workflows and never imports ``cloaca``. Test helpers live in
`actors.testing`.
"""

from __future__ import annotations

from .actor import Actor
from .backoff import Backoff
from .clock import Clock, ManualClock, SystemClock, deadline_scope
from .errors import (
    ActorDeadError,
    ActorError,
    AskTimeout,
    ChildStartError,
    MailboxClosedError,
    SupervisorEscalation,
)
from .exit import Crashed, ErrorInfo, ExitReason, Normal, Shutdown
from .intensity import RestartIntensity
from .mailbox import MailboxStatistics
from .monitor import (
    ChildExited,
    ChildRestarted,
    ChildStarted,
    Monitor,
    SupervisionEvent,
    SupervisorEscalated,
)
from .planning import RestartPlan, plan_restart, plan_shutdown, should_restart
from .ref import ActorRef
from .spec import (
    ChildSpec,
    Restart,
    RestartDecider,
    RestartDecision,
    ShutdownPolicy,
    Strategy,
    SupervisorFlags,
)
from .supervisor import ChildInfo, Supervisor, SupervisorStatistics
from .system import ActorSystem

__all__: tuple[str, ...] = (
    "Actor",
    "ActorDeadError",
    "ActorError",
    "ActorRef",
    "ActorSystem",
    "AskTimeout",
    "Backoff",
    "ChildExited",
    "ChildInfo",
    "ChildRestarted",
    "ChildSpec",
    "ChildStartError",
    "ChildStarted",
    "Clock",
    "Crashed",
    "ErrorInfo",
    "ExitReason",
    "MailboxClosedError",
    "MailboxStatistics",
    "ManualClock",
    "Monitor",
    "Normal",
    "Restart",
    "RestartDecider",
    "RestartDecision",
    "RestartIntensity",
    "RestartPlan",
    "Shutdown",
    "ShutdownPolicy",
    "Strategy",
    "SupervisionEvent",
    "Supervisor",
    "SupervisorEscalated",
    "SupervisorEscalation",
    "SupervisorFlags",
    "SupervisorStatistics",
    "SystemClock",
    "deadline_scope",
    "plan_restart",
    "plan_shutdown",
    "should_restart",
)
