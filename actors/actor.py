"""`Actor[M]`: the base class of every actor, its receive loop and its lifecycle.

An incarnation runs ``on_start`` → the receive loop (``handle(message)`` per message) →
``on_stop(reason)``. The parent starts it with ``await tg.start(run_actor, ...)``, and
the actor reports readiness only after ``on_start`` returned, so "started" means
initialised. The receive loop serves the mailbox's system lane (stop requests,
supervision notices) before user messages, replies to asks with ``handle``'s return
value, and turns an exception from ``handle`` into a `Crashed` exit. Cancellation by the
parent is a `Shutdown`, never a crash. ``on_stop`` runs shielded under a deadline on the
actor's clock.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, TypeVar

import anyio
from anyio.abc import TaskStatus

from ._backend import checkpoint
from .clock import Clock, deadline_scope
from .envelope import Envelope
from .exit import Crashed, ExitReason, Normal, Shutdown
from .mailbox import NOTHING, OPEN, Mailbox, SystemMessage
from .ref import ActorRef

if TYPE_CHECKING:
    from .monitor import Monitor

__all__ = ("Actor", "InstantStart", "StartFailed", "run_actor")

M = TypeVar("M")

SHUTDOWN: Final = Shutdown()

#: The actor whose task is running; lets a supervisor tell its own handlers (which may
#: act inline) from other tasks (which must go through its mailbox).
current_actor: contextvars.ContextVar[Actor[Any] | None] = contextvars.ContextVar(
    "actors_current_actor", default=None
)


class StopRequest(SystemMessage, frozen=True):
    """Finish the current message, then exit with `Shutdown`; queued messages stay."""


STOP: Final = StopRequest()


class InjectFault(SystemMessage, frozen=True):
    """Fault injection: the receive loop raises ``error`` (the actor crashes).

    Attributes:
        error: The exception to raise.
    """

    error: object = None


class StartFailed:
    """What a child hands its parent instead of readiness when it failed to start."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class InstantStart:
    """The ``task_status`` of an `Actor.instant_start` incarnation.

    Nobody waits for readiness; a start failure becomes the incarnation's exit
    (``on_exit`` with `Crashed`, or `Shutdown` when cancelled during ``on_start``).
    """

    __slots__ = ("_on_exit",)

    def __init__(self, on_exit: Callable[[ExitReason], None]) -> None:
        self._on_exit = on_exit

    def started(self, value: StartFailed | None = None) -> None:
        """Called by the incarnation once ``on_start`` returned or failed."""
        if value is not None:
            error = value.error
            self._on_exit(SHUTDOWN if error is None else Crashed.from_exception(error))


class Actor(Generic[M]):
    """Base class of actors.

    Subclasses override `handle` (and optionally `on_start` and `on_stop`). The toolkit
    needs no constructor arguments; subclasses take their own. An instance serves one
    incarnation: a supervisor calls its child spec's factory again for each restart.

    Attributes:
        mailbox_capacity: Bound of the mailbox (``math.inf`` for unbounded); a full
            mailbox makes senders wait.
        stop_timeout: Seconds on the clock that ``on_stop`` may take before it is
            cancelled.
        instant_start: The supervisor starts an incarnation without waiting for its
            ``on_start`` (no readiness round trip): for one-shot children started
            at a high rate whose ``on_start`` does not wait and cannot fail
            meaningfully. The child counts as started (`ChildStarted`, the ref
            returned by ``start_child``) as soon as its task is spawned, and
            ``on_start`` runs first thing in that task; if it raises anyway, the
            incarnation exits `Crashed` (handled by its restart policy like any
            crash, with no `ChildStartError` and without ``on_stop``).
    """

    mailbox_capacity: ClassVar[float] = 1024
    stop_timeout: ClassVar[float] = 5.0
    instant_start: ClassVar[bool] = False

    # Class-level defaults, because subclasses need not call Actor.__init__.
    _mailbox: Mailbox[M] | None = None
    _ref: ActorRef[M] | None = None
    _clock: Clock | None = None
    _monitor: Monitor | None = None
    _incarnation: int = 0
    _started: bool = False
    _stop_requested: bool = False
    _stop_value: Any = None

    def _bind(
        self,
        mailbox: Mailbox[M],
        ref: ActorRef[M],
        incarnation: int,
        monitor: Monitor | None,
    ) -> None:
        self._mailbox = mailbox
        self._ref = ref
        self._clock = mailbox.clock
        self._incarnation = incarnation
        self._monitor = monitor

    @property
    def ref(self) -> ActorRef[M]:
        """This actor's ref (valid from ``on_start`` on, stable across restarts)."""
        if self._ref is None:
            raise RuntimeError(f"{type(self).__name__} has not been started")
        return self._ref

    @property
    def name(self) -> str:
        """This actor's path, e.g. ``"root/executor"``."""
        return self.ref.name

    @property
    def clock(self) -> Clock:
        """The actor system's clock."""
        if self._clock is None:
            raise RuntimeError(f"{type(self).__name__} has not been started")
        return self._clock

    @property
    def incarnation(self) -> int:
        """1 for the first start of a child slot, plus one per restart."""
        return self._incarnation

    async def on_start(self) -> None:
        """Initialise; the actor counts as started only once this returns.

        Raising here is a start failure (`ChildStartError` for whoever started it).
        """

    async def handle(self, message: M) -> Any:
        """Handle one message; the return value is the reply to an ask.

        Raising crashes the actor (an ask being handled fails with `ActorDeadError`).

        Raises:
            TypeError: By default: the actor handles no messages.
        """
        raise TypeError(
            f"{type(self).__name__} does not handle messages of type "
            f"{type(message).__name__}"
        )

    async def on_stop(self, reason: ExitReason) -> None:
        """Clean up; runs shielded from cancellation, under a `stop_timeout` deadline.

        Not called when ``on_start`` failed. An exception here turns a `Normal` or
        `Shutdown` exit into `Crashed`.

        Args:
            reason: Why the actor stops.
        """

    def stop(self, value: Any = None) -> None:
        """Finish the current message, then exit with ``Normal(value)``.

        Args:
            value: Reported in the `Normal` exit reason (how a one-shot child reports
                its result to whoever watches its supervisor).
        """
        self._stop_requested = True
        self._stop_value = value
        if self._mailbox is not None:
            self._mailbox.wake()

    async def _on_system(self, message: SystemMessage) -> ExitReason | None:
        """Act on a control message; return an exit reason to end the loop."""
        if type(message) is StopRequest:
            return SHUTDOWN
        if type(message) is InjectFault:
            error = message.error
            raise error if isinstance(error, BaseException) else RuntimeError(error)
        return None

    async def _serve(self) -> ExitReason:
        """The receive loop; returns the exit reason or raises the crash."""
        mailbox = self._mailbox
        assert mailbox is not None
        system = mailbox._system
        handle = self.handle
        name = mailbox.name
        while True:
            if self._stop_requested:
                return Normal(self._stop_value)
            if system:
                reason = await self._on_system(system.popleft())
                if reason is not None:
                    return reason
                continue
            if mailbox._state == OPEN:
                item = await mailbox.get()
                if item is NOTHING:
                    continue
            else:
                # Intake closed: drain what is queued (blocked senders included), then
                # stop; the checkpoint keeps a long drain cancellable and fair.
                await checkpoint()
                try:
                    item = mailbox.get_nowait()
                except anyio.WouldBlock:
                    return SHUTDOWN
            if type(item) is Envelope:
                try:
                    value = await handle(item.message)
                except Exception as exc:
                    item.fail(
                        f"actor {name!r} crashed while handling the request",
                        actor=name,
                        cause=exc,
                    )
                    raise
                except BaseException:
                    # Cancelled mid-request: fail the ask now, as no reply will come.
                    item.fail(f"actor {name!r} stopped before replying", actor=name)
                    raise
                item.resolve(value)
            else:
                await handle(item)

    async def _lifecycle(
        self, task_status: TaskStatus[StartFailed | None]
    ) -> ExitReason | None:
        """Run one incarnation; None means the start failure was already reported."""
        try:
            await self.on_start()
        except Exception as exc:
            task_status.started(StartFailed(exc))
            return None
        self._started = True
        task_status.started(None)
        return await self._serve_and_stop()

    async def _serve_and_stop(self) -> ExitReason:
        reason: ExitReason = SHUTDOWN
        try:
            reason = await self._serve()
        except Exception as exc:
            reason = Crashed.from_exception(exc)
        finally:
            # Also runs on cancellation, with reason still Shutdown.
            failure = await self._call_on_stop(reason)
        if failure is not None and type(reason) is not Crashed:
            reason = Crashed.from_exception(failure)
        return reason

    async def _call_on_stop(self, reason: ExitReason) -> Exception | None:
        if type(self).on_stop is Actor.on_stop:
            return None
        clock = self.clock
        async with deadline_scope(
            clock, clock.monotonic() + self.stop_timeout, shield=True
        ):
            try:
                await self.on_stop(reason)
            except Exception as exc:
                return exc
        return None


async def run_actor(
    actor: Actor[Any],
    scope: anyio.CancelScope,
    on_exit: Callable[[ExitReason], None],
    *,
    task_status: TaskStatus[StartFailed | None],
) -> None:
    """Run one incarnation of ``actor`` inside ``scope`` (the parent's stop handle).

    Reports readiness (or `StartFailed`) through ``task_status`` and, once a started
    incarnation has exited, calls ``on_exit(reason)`` synchronously. Never raises an
    ``Exception``: failures travel as exit reasons, so the parent's task group never
    sees them. Cancelling ``scope`` makes the exit a `Shutdown`.
    """
    current_actor.set(actor)
    reason: ExitReason | None = SHUTDOWN
    with scope:
        reason = await actor._lifecycle(task_status)
    if reason is None:
        return
    if not actor._started:
        # Cancelled by the parent while still in on_start.
        task_status.started(StartFailed(None))
        return
    if scope.cancel_called and type(reason) is Crashed:
        reason = SHUTDOWN
    on_exit(reason)
