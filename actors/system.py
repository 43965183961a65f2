"""`ActorSystem`: the async context manager owning the root task group and supervisor.

Entering the system starts the root `Supervisor` (and returns once it is initialised);
leaving it shuts down gracefully: the root's intake closes, every supervisor drains its
mailbox and stops its children in reverse start order by their shutdown policies, and
whatever still runs at the deadline (on the system's `Clock`) is cancelled. When the
root gives up (restart intensity exceeded), the body of the ``async with`` block is
cancelled, `ActorSystem.escalation` is set and ``__aexit__`` raises it. There is no
process-global registry: each system is self-contained (pykka's ``ActorRegistry`` is the
counter-example).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Final

import anyio
from anyio.abc import TaskGroup

from .actor import StartFailed, run_actor
from .clock import Clock, SystemClock, deadline_scope
from .errors import ChildStartError, MailboxClosedError, SupervisorEscalation
from .exit import Crashed, ExitReason
from .mailbox import Mailbox
from .monitor import Monitor
from .ref import ActorRef
from .spec import ChildSpec, SupervisorFlags
from .supervisor import Supervisor

__all__ = ("ActorSystem",)

_NEW: Final = 0
_RUNNING: Final = 1
_CLOSED: Final = 2


class ActorSystem:
    """A running tree of actors under one root supervisor.

    Use it as ``async with ActorSystem(...) as system:``; children of the root are
    started with `spawn`.

    Args:
        clock: The clock every actor reads (`SystemClock` by default).
        monitor: Receives every supervision event of the tree.
        flags: The root supervisor's restart policy.
        shutdown_timeout: Default deadline of `shutdown`, in seconds on ``clock``.
        name: The root's name; child paths start with it.

    Attributes:
        escalation: The root's `SupervisorEscalation` once it gave up, else None.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        monitor: Monitor | None = None,
        flags: SupervisorFlags = SupervisorFlags(),  # noqa: B008 - frozen, so shareable
        shutdown_timeout: float = 5.0,
        name: str = "root",
    ) -> None:
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._monitor = monitor
        self._flags = flags
        self._shutdown_timeout = shutdown_timeout
        self._name = name
        self._root = Supervisor((), flags)
        self._state = _NEW
        self._tg: TaskGroup | None = None
        self._scope = anyio.CancelScope()
        self._root_alive = False
        self._shutting_down = False
        self._done: anyio.Event | None = None
        self._escalated: anyio.Event | None = None
        self._root_mailbox: Mailbox[Any] | None = None
        self.escalation: SupervisorEscalation | None = None

    @property
    def root(self) -> Supervisor:
        """The root supervisor."""
        return self._root

    @property
    def clock(self) -> Clock:
        """The clock every actor of the system reads."""
        return self._clock

    async def __aenter__(self) -> ActorSystem:
        if self._state != _NEW:
            raise RuntimeError("an ActorSystem can be entered only once")
        self._state = _RUNNING
        self._done = anyio.Event()
        self._escalated = anyio.Event()
        mailbox: Mailbox[Any] = Mailbox(
            self._name, Supervisor.mailbox_capacity, self._clock
        )
        self._root_mailbox = mailbox
        self._root._bind(mailbox, ActorRef(mailbox), 1, self._monitor)
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._root_alive = True
        try:
            failed: StartFailed | None = await tg.start(
                run_actor, self._root, self._scope, self._root_exited
            )
        except BaseException as exc:
            # Cancelled while starting: leave nothing behind, then let it propagate.
            self._root_alive = False
            self._state = _CLOSED
            mailbox.close()
            tg.cancel_scope.cancel()
            await tg.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        if failed is not None:
            self._root_alive = False
            self._state = _CLOSED
            mailbox.close(failed.error)
            await tg.__aexit__(None, None, None)
            error = failed.error
            if isinstance(error, ChildStartError):
                raise error
            raise ChildStartError(self._name) from error
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        tg = self._tg
        assert tg is not None
        cancelled_class = anyio.get_cancelled_exc_class()
        pending = exc if isinstance(exc, cancelled_class) else None
        if pending is None and self._root_alive:
            try:
                await self.shutdown()
            except cancelled_class as cancel:
                # The root escalated (cancelling our group) or we are cancelled from
                # outside; either way the group must see the cancellation it caused.
                pending = cancel
        if self._root_alive:
            # Cancelled from outside: no graceful stop, cancel what is left.
            self._scope.cancel()
        self._state = _CLOSED
        try:
            if pending is None:
                # The root has exited; handing the group the body's exception would
                # only wrap it in an ExceptionGroup, so it propagates by itself.
                await tg.__aexit__(None, None, None)
            elif not await tg.__aexit__(type(pending), pending, pending.__traceback__):
                if pending is exc:
                    return False
                raise pending
        finally:
            # A root cancelled from outside never reports its exit; close it here.
            self._root_alive = False
            if self._root_mailbox is not None:
                self._root_mailbox.close()
            if self._done is not None:
                self._done.set()
        if self.escalation is not None and (exc is None or exc is pending):
            raise self.escalation
        return exc is not None and exc is pending

    async def spawn(self, spec: ChildSpec) -> ActorRef[Any]:
        """Start a child of the root supervisor and return its ref once started.

        Raises:
            ChildStartError: If the child failed to start.
            ValueError: If the root already has a child with that id.
            MailboxClosedError: If the system is shutting down or shut down.
            RuntimeError: If the system was never entered.
        """
        if self._state == _NEW:
            raise RuntimeError("the ActorSystem is not running; use 'async with'")
        if self._shutting_down or not self._root_alive:
            raise MailboxClosedError(
                f"actor system {self._name!r} is shut down", actor=self._name
            )
        return await self._root.start_child(spec)

    async def shutdown(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Stop the system gracefully; idempotent.

        The root's intake closes at once (`spawn` and sends to the root raise
        `MailboxClosedError`). Then, supervisor by supervisor, each actor drains its
        mailbox and children stop in reverse start order, each by its shutdown policy;
        an actor whose turn has come refuses new messages with `MailboxClosedError`, and
        once stopped, with `ActorDeadError`. Whatever still runs at the deadline is
        cancelled. A second call waits for the first to finish.

        Args:
            timeout: Seconds on the system clock (not anyio's, hence a parameter)
                before cancelling what is left; ``shutdown_timeout`` when None.
        """
        if self._state == _NEW:
            raise RuntimeError("the ActorSystem is not running; use 'async with'")
        done = self._done
        assert done is not None
        if not self._root_alive:
            return
        if self._shutting_down:
            await done.wait()
            return
        self._shutting_down = True
        clock = self._clock
        grace = self._shutdown_timeout if timeout is None else timeout
        mailbox = self._root_mailbox
        assert mailbox is not None
        mailbox.close_intake()
        async with deadline_scope(clock, clock.monotonic() + grace):
            await done.wait()
        if self._root_alive:
            self._scope.cancel()
            await done.wait()

    async def wait_escalated(self) -> SupervisorEscalation:
        """Wait until the root gives up and return its escalation.

        Raises:
            RuntimeError: If the system was never entered.
        """
        event = self._escalated
        if event is None:
            raise RuntimeError("the ActorSystem is not running; use 'async with'")
        await event.wait()
        assert self.escalation is not None
        return self.escalation

    def _root_exited(self, reason: ExitReason) -> None:
        self._root_alive = False
        cause: BaseException | None = None
        if type(reason) is Crashed:
            error = reason.exception
            cause = error if isinstance(error, BaseException) else None
            if isinstance(error, SupervisorEscalation):
                escalation = error
            else:
                escalation = SupervisorEscalation(
                    self._name,
                    self._name,
                    0,
                    self._flags.period,
                    f"root supervisor {self._name!r} crashed: {reason.error.message}",
                )
                escalation.__cause__ = cause
            self.escalation = escalation
            assert self._escalated is not None
            assert self._tg is not None
            self._escalated.set()
            # Like a failing task in a task group: the body of `async with` is
            # cancelled.
            self._tg.cancel_scope.cancel()
        assert self._root_mailbox is not None
        assert self._done is not None
        self._root_mailbox.close(cause)
        self._done.set()

    def __repr__(self) -> str:
        state = ("new", "running", "closed")[self._state]
        return f"<ActorSystem {self._name!r} {state}>"
