"""`Supervisor`: an actor that starts, watches, restarts and stops children (OTP).

Children run in the supervisor's task group, each in a wrapper (`run_actor`) that turns
every outcome into an exit reason and reports it on the supervisor's priority lane, so
the task group never sees a child's error. The supervisor acts on exits in its receive
loop: a `RestartDecider` may decide (without using up intensity), otherwise the restart
type and `RestartIntensity` do, and `plan_restart` says which siblings restart with the
child. Exceeding the intensity raises one `SupervisorEscalation` (``__cause__`` = the
child's failure), which crashes the supervisor and so reaches its parent. Children
start in order (each after the previous one's ``on_start``; an `Actor.instant_start`
child is not waited for) and stop in reverse order by their `ShutdownPolicy`. A child
slot owns its mailbox, so refs stay valid across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
from collections.abc import Sequence
from typing import Any, Final

import anyio
import msgspec
import structlog

from ._backend import new_cancel_scope, running_loop
from .actor import (
    SHUTDOWN,
    STOP,
    Actor,
    InjectFault,
    InstantStart,
    StartFailed,
    current_actor,
    run_actor,
)
from .clock import deadline_scope
from .envelope import Envelope
from .errors import ActorDeadError, ChildStartError, SupervisorEscalation
from .exit import Crashed, ExitReason
from .intensity import RestartIntensity
from .mailbox import Mailbox, SystemMessage
from .monitor import (
    ChildExited,
    ChildRestarted,
    ChildStarted,
    SupervisionEvent,
    SupervisorEscalated,
)
from .planning import plan_restart, should_restart
from .ref import ActorRef
from .spec import ChildSpec, RestartDecider, Strategy, SupervisorFlags

__all__ = ("ChildInfo", "Supervisor", "SupervisorStatistics")

logger = structlog.get_logger(__name__)

# Slot states.
_RUNNING: Final = 0  # an incarnation is (being) started or running
_EXITED: Final = 1  # it exited on its own; the exit is waiting in the priority lane
_STOPPING: Final = 2  # the supervisor is stopping it
_PENDING: Final = 3  # waiting to be (re)started
_DONE: Final = 4  # removed

# Stop modes.
_RESTART: Final = (
    0  # exit after the current message; the mailbox stays for the next one
)
_TERMINATE: Final = 1  # exit after the current message; then the mailbox closes
_DRAIN: Final = 2  # close intake, handle what is queued, exit; then the mailbox closes


class ChildInfo(msgspec.Struct, frozen=True):
    """One child as `Supervisor.which_children` reports it.

    Attributes:
        id: The child's spec id.
        ref: Its ref (stable across restarts).
        incarnation: The current (or last) incarnation number.
        alive: Whether an incarnation is running now (False while a restart waits).
    """

    id: str
    ref: ActorRef[Any]
    incarnation: int
    alive: bool


class SupervisorStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """Counters of a supervisor.

    Attributes:
        children: Children currently known (running or waiting to restart).
        alive: Children with a running incarnation.
        pending_restarts: Children waiting for a restart.
        starts: Incarnations started since the supervisor started.
        restarts: Restarts decided since the supervisor started.
    """

    children: int
    alive: int
    pending_restarts: int
    starts: int
    restarts: int


class _Slot:
    """A child position: spec, mailbox and ref outlive incarnations."""

    __slots__ = (
        "alive",
        "announced",
        "exit_event",
        "incarnation",
        "mailbox",
        "ref",
        "scope",
        "seq",
        "spec",
        "state",
        "token",
    )

    def __init__(self, spec: ChildSpec, mailbox: Mailbox[Any], seq: int) -> None:
        self.spec = spec
        self.mailbox = mailbox
        self.ref: ActorRef[Any] = ActorRef(mailbox)
        self.seq = seq
        self.incarnation = 0
        self.state = _PENDING
        self.alive = False
        self.announced = False
        self.scope: anyio.CancelScope | None = None
        self.exit_event: anyio.Event | None = None
        self.token = 0


def _seq(slot: _Slot) -> int:
    return slot.seq


def _cause(reason: ExitReason) -> BaseException | None:
    if type(reason) is Crashed and isinstance(reason.exception, BaseException):
        return reason.exception
    return None


class _ChildDown(SystemMessage, frozen=True):
    slot: Any = None
    incarnation: int = 0
    reason: Any = None


class _RestartDue(SystemMessage, frozen=True):
    token: int = 0


class _StartChild(SystemMessage, frozen=True):
    spec: Any = None


class _TerminateChild(SystemMessage, frozen=True):
    child_id: str = ""


class Supervisor(Actor[Any]):
    """An actor that supervises children.

    A supervisor is itself an actor, so it can be the child of another supervisor; its
    ``handle`` delegates to `handle_message`, which subclasses override to accept their
    own messages. Subclasses that define ``__init__`` must call ``super().__init__``.

    Args:
        children: Static children, started in this order when the supervisor starts.
        flags: Strategy, intensity and backoff.
        decider: Optional hook consulted on every child exit; its decisions override the
            restart rules and do not count toward intensity.

    Raises:
        ValueError: If two static children share an id.
    """

    def __init__(
        self,
        children: Sequence[ChildSpec] = (),
        flags: SupervisorFlags = SupervisorFlags(),  # noqa: B008 - frozen, so shareable
        *,
        decider: RestartDecider | None = None,
    ) -> None:
        ids = [spec.id for spec in children]
        duplicates = sorted({cid for cid in ids if ids.count(cid) > 1})
        if duplicates:
            raise ValueError(f"duplicate child ids: {', '.join(map(repr, duplicates))}")
        self._specs = tuple(children)
        self._flags = flags
        self._decider = decider
        self._children: dict[str, _Slot] = {}
        self._intensity = RestartIntensity(flags.intensity, flags.period)
        self._next_seq = 0
        self._next_token = 0
        self._due: set[_Slot] = set()
        self._groups: dict[int, list[_Slot]] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        # Instant-start children on asyncio run in plain tasks (see _launch).
        self._hosted: set[asyncio.Task[None]] = set()
        self._reaping = False
        self._serving = False
        self._starts = 0
        self._restarts = 0

    # ----------------------------------------------------------------- public API

    @property
    def flags(self) -> SupervisorFlags:
        """The supervisor's restart policy."""
        return self._flags

    async def start_child(self, spec: ChildSpec) -> ActorRef[Any]:
        """Start a dynamic child and return its ref once its ``on_start`` returned.

        An `Actor.instant_start` child is not waited for: its ref comes back as
        soon as its task is spawned, and a failing ``on_start`` is a crash of the
        started child rather than a `ChildStartError`.

        Args:
            spec: The child; its id must not belong to a current child.

        Returns:
            The child's ref.

        Raises:
            ChildStartError: If the child failed in its factory or ``on_start``
                (``__cause__`` is that failure).
            ValueError: If a current child already has ``spec.id``.
            ActorDeadError: If the supervisor is not running.
        """
        if current_actor.get() is self:
            return await self._start_new(spec)
        result = await self._call(_StartChild(spec=spec, reply=Envelope(spec)))
        assert isinstance(result, ActorRef)
        return result

    def start_child_nowait(self, spec: ChildSpec) -> None:
        """Ask for a dynamic child to be started, without waiting for it.

        For one-shot children started at a high rate, where a start failure is
        not the caller's to handle: the supervisor starts the child when it next
        serves its control messages (in the order of the requests, after any exit
        already reported). A start failure is reported to the monitor as a
        `ChildExited` with ``during_start`` and logged (an `Actor.instant_start`
        child whose ``on_start`` fails crashes instead, see there).

        Args:
            spec: The child; its id must not belong to a current child when the
                supervisor starts it.

        Raises:
            ActorDeadError: If the supervisor is not running.
        """
        mailbox = self._mailbox
        if mailbox is None or not self._serving:
            raise ActorDeadError(
                f"supervisor {self._name()!r} is not running", actor=self._name()
            )
        mailbox.post_system(_StartChild(spec=spec))

    async def terminate_child(self, child_id: str) -> None:
        """Stop a child by its shutdown policy (draining its mailbox) and remove it.

        Args:
            child_id: The child's spec id.

        Raises:
            KeyError: If there is no such child.
            ActorDeadError: If the supervisor is not running.
        """
        if current_actor.get() is self:
            await self._terminate(child_id)
            return
        await self._call(_TerminateChild(child_id=child_id, reply=Envelope(child_id)))

    def which_children(self) -> list[ChildInfo]:
        """Return the current children, in start order."""
        return [
            ChildInfo(cid, slot.ref, slot.incarnation, slot.alive)
            for cid, slot in self._children.items()
        ]

    def ref_of(self, child_id: str) -> ActorRef[Any]:
        """Return the ref of a current child.

        Raises:
            KeyError: If there is no such child.
        """
        return self._children[child_id].ref

    def statistics(self) -> SupervisorStatistics:
        """Return the supervisor's counters."""
        slots = self._children.values()
        return SupervisorStatistics(
            children=len(self._children),
            alive=sum(1 for slot in slots if slot.alive),
            pending_restarts=sum(1 for slot in slots if slot.state == _PENDING),
            starts=self._starts,
            restarts=self._restarts,
        )

    async def handle_message(self, message: Any) -> Any:
        """Handle a user message sent to the supervisor (override point).

        Raises:
            TypeError: By default: a plain supervisor accepts no messages.
        """
        raise TypeError(
            f"supervisor {self.name!r} does not handle messages of type "
            f"{type(message).__name__}"
        )

    async def handle(self, message: Any) -> Any:
        """Delegate to `handle_message`."""
        return await self.handle_message(message)

    # ------------------------------------------------------------------ lifecycle

    async def _lifecycle(
        self, task_status: anyio.abc.TaskStatus[StartFailed | None]
    ) -> ExitReason | None:
        self._reaping = False
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._serving = True
                try:
                    await self.on_start()
                    for spec in self._specs:
                        await self._start_new(spec)
                except Exception as exc:
                    self._serving = False
                    await self._stop_all(_TERMINATE)
                    tg.cancel_scope.cancel()
                    task_status.started(StartFailed(exc))
                    return None
                self._started = True
                task_status.started(None)
                reason = await self._serve_and_stop()
                tg.cancel_scope.cancel()
            return reason
        finally:
            self._serving = False
            await self._reap_hosted()
            # Cancelled with us, children never report; their mailboxes close here.
            for slot in self._children.values():
                slot.state = _DONE
                slot.mailbox.close()
            self._children.clear()
            self._due.clear()
            self._groups.clear()

    async def _serve_and_stop(self) -> ExitReason:
        reason: ExitReason = SHUTDOWN
        try:
            reason = await self._serve()
        except Exception as exc:
            reason = Crashed.from_exception(exc)
        except BaseException:
            # Cancelled: the task group cancels the children with us; on_stop still
            # runs.
            self._serving = False
            await self._call_on_stop(SHUTDOWN)
            raise
        self._serving = False
        mailbox = self._mailbox
        assert mailbox is not None
        await self._stop_all(_TERMINATE if mailbox.is_open else _DRAIN)
        failure = await self._call_on_stop(reason)
        if failure is not None and type(reason) is not Crashed:
            reason = Crashed.from_exception(failure)
        return reason

    async def _on_system(self, message: SystemMessage) -> ExitReason | None:
        if isinstance(message, _ChildDown):
            slot: _Slot = message.slot
            if slot.state == _EXITED and slot.incarnation == message.incarnation:
                await self._handle_exit(slot, message.reason)
                await self._start_due()
            return None
        if isinstance(message, _RestartDue):
            token = message.token
            for slot in self._groups.pop(token, ()):
                if slot.state == _PENDING and slot.token == token:
                    self._due.add(slot)
            await self._start_due()
            return None
        if isinstance(message, _StartChild | _TerminateChild):
            reply = message.reply
            try:
                if isinstance(message, _StartChild):
                    ref = await self._start_new(message.spec)
                    if reply is not None:
                        reply.resolve(ref)
                else:
                    await self._terminate(message.child_id)
                    if reply is not None:
                        reply.resolve(None)
            except Exception as exc:
                if reply is not None:
                    reply.reject(exc)
                else:
                    # start_child_nowait: nobody waits for the answer.
                    logger.warning(
                        "actors.child.start_failed",
                        supervisor=self.name,
                        child_id=getattr(getattr(message, "spec", None), "id", None),
                        error=f"{type(exc).__name__}: {exc}",
                    )
            return None
        return await super()._on_system(message)

    async def _call(self, message: SystemMessage) -> Any:
        mailbox = self._mailbox
        if mailbox is None or not self._serving:
            raise ActorDeadError(
                f"supervisor {self._name()!r} is not running", actor=self._name()
            )
        reply = message.reply
        assert reply is not None
        mailbox.post_system(message)
        await reply.wait()
        return reply.result()

    def _name(self) -> str:
        return self._ref.name if self._ref is not None else type(self).__name__

    # ----------------------------------------------------------- starting children

    async def _start_new(self, spec: ChildSpec) -> ActorRef[Any]:
        if not self._serving:
            raise ActorDeadError(
                f"supervisor {self._name()!r} is not running", actor=self._name()
            )
        if spec.id in self._children:
            raise ValueError(
                f"supervisor {self.name!r} already has a child {spec.id!r}"
            )
        try:
            actor = spec.factory()
        except Exception as exc:
            self._emit_start_failure(spec.id, 1, exc)
            raise ChildStartError(spec.id) from exc
        mailbox: Mailbox[Any] = Mailbox(
            f"{self.name}/{spec.id}", type(actor).mailbox_capacity, self.clock
        )
        slot = _Slot(spec, mailbox, self._next_seq)
        self._next_seq += 1
        self._children[spec.id] = slot
        failed = await self._launch(slot, actor)
        if failed is not None:
            if self._children.get(spec.id) is slot:
                del self._children[spec.id]
            slot.state = _DONE
            error = failed.error
            mailbox.close(error)
            self._emit_start_failure(spec.id, slot.incarnation, error)
            raise ChildStartError(spec.id) from error
        return slot.ref

    async def _launch(
        self, slot: _Slot, actor: Actor[Any] | None
    ) -> StartFailed | None:
        """Start the slot's next incarnation; return the failure, if any."""
        slot.incarnation += 1
        if actor is None:
            try:
                actor = slot.spec.factory()
            except Exception as exc:
                return StartFailed(exc)
        incarnation = slot.incarnation
        actor._bind(slot.mailbox, slot.ref, incarnation, self._monitor)
        scope = new_cancel_scope()
        slot.scope = scope
        slot.state = _RUNNING
        slot.alive = True
        slot.announced = False
        slot.exit_event = None
        tg = self._tg
        assert tg is not None
        on_exit = functools.partial(self._child_exited, slot, incarnation)
        if type(actor).instant_start:
            # Nothing to wait for (Actor.instant_start): announce now, in start
            # order, and let the child's task run on_start on its own.
            self._starts += 1
            slot.announced = True
            if self._monitor is not None:
                self._emit(
                    ChildStarted(
                        supervisor=self.name,
                        child_id=slot.spec.id,
                        incarnation=incarnation,
                    )
                )
            status = InstantStart(on_exit)
            loop = running_loop()
            if loop is None:
                tg.start_soon(
                    functools.partial(
                        run_actor, actor, scope, on_exit, task_status=status
                    )
                )
                return None
            # A plain asyncio task instead of a task group child: anyio's spawn (a
            # task handle with its own cancel scope and event) cost more than the
            # whole start. ``scope`` stops it as it stops any child; _reap_hosted
            # does what the task group would do when the supervisor goes down.
            task = loop.create_task(
                run_actor(actor, scope, on_exit, task_status=status)
            )
            self._hosted.add(task)
            task.add_done_callback(self._hosted_done)
            return None
        failed: StartFailed | None = await tg.start(run_actor, actor, scope, on_exit)
        if failed is not None:
            slot.alive = False
            return failed
        self._starts += 1
        if not slot.announced:
            slot.announced = True
            self._emit(
                ChildStarted(
                    supervisor=self.name, child_id=slot.spec.id, incarnation=incarnation
                )
            )
        return None

    def _hosted_done(self, task: asyncio.Task[None]) -> None:
        self._hosted.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return
        # run_actor never raises an Exception; if it did, fail loudly, as the
        # task group would have: crash the supervisor with it.
        mailbox = self._mailbox
        if self._serving and mailbox is not None and not mailbox.is_dead:
            mailbox.post_system(InjectFault(error=error))
        else:
            logger.error(
                "actors.child.task_failed",
                supervisor=self.name,
                error=f"{type(error).__name__}: {error}",
            )

    async def _reap_hosted(self) -> None:
        """Stop the plain-task children still running as the supervisor ends.

        Only when the supervisor is cancelled (its own stop stops every child
        first): like task group children cancelled with it, they run ``on_stop``
        and do not report.
        """
        hosted = [task for task in self._hosted if not task.done()]
        if not hosted:
            return
        self._reaping = True
        for slot in self._children.values():
            if slot.alive and slot.scope is not None:
                slot.scope.cancel()
        with new_cancel_scope(shield=True):
            await asyncio.wait(hosted)

    def _child_exited(self, slot: _Slot, incarnation: int, reason: ExitReason) -> None:
        """Runs in the child's task, synchronously, as its incarnation ends."""
        if self._reaping:
            slot.alive = False
            if slot.exit_event is not None:
                slot.exit_event.set()
            return
        if self._monitor is not None:
            # Events only for a monitor: a task actor per attempt adds up.
            name = self.name
            if not slot.announced:
                # The child exited before start() returned to us; keep events in
                # order.
                self._emit(
                    ChildStarted(
                        supervisor=name, child_id=slot.spec.id, incarnation=incarnation
                    )
                )
            self._emit(
                ChildExited(
                    supervisor=name,
                    child_id=slot.spec.id,
                    incarnation=incarnation,
                    reason=reason,
                )
            )
        slot.announced = True
        slot.alive = False
        if slot.state == _RUNNING and slot.incarnation == incarnation:
            slot.state = _EXITED
            mailbox = self._mailbox
            if self._serving and mailbox is not None and not mailbox.is_dead:
                mailbox.post_system(
                    _ChildDown(slot=slot, incarnation=incarnation, reason=reason)
                )
        event = slot.exit_event
        if event is not None:
            event.set()

    async def _start_due(self) -> None:
        """Start every slot whose restart is due, in start order."""
        due = self._due
        while due and self._serving:
            slot = min(due, key=_seq)
            due.discard(slot)
            if slot.state != _PENDING:
                continue
            failed = await self._launch(slot, None)
            if failed is None:
                continue
            error = failed.error or ChildStartError(slot.spec.id)
            reason = Crashed.from_exception(error)
            slot.state = _EXITED
            self._emit(
                ChildExited(
                    supervisor=self.name,
                    child_id=slot.spec.id,
                    incarnation=slot.incarnation,
                    reason=reason,
                    during_start=True,
                )
            )
            await self._handle_exit(slot, reason)

    # ------------------------------------------------------------ handling exits

    async def _handle_exit(self, slot: _Slot, reason: ExitReason) -> None:
        spec = slot.spec
        decision = None
        if self._decider is not None:
            decision = await self._decider(spec.id, reason, slot.incarnation)
            if slot.state != _EXITED:
                return  # the decider's await let something else act on this slot
        if decision is not None:
            restart, delay, counted = decision.restart, decision.delay, False
        else:
            restart, delay, counted = should_restart(spec.restart, reason), 0.0, True
        if not restart:
            self._remove(slot, _cause(reason))
            return
        restarts = 0
        if counted:
            flags = self._flags
            now = self.clock.monotonic()
            allowed = self._intensity.record(now)
            restarts = self._intensity.count(now)
            if not allowed:
                self._emit(
                    SupervisorEscalated(
                        supervisor=self.name,
                        child_id=spec.id,
                        incarnation=slot.incarnation,
                        restarts=restarts,
                        period=flags.period,
                        reason=reason,
                    )
                )
                raise SupervisorEscalation(
                    self.name, spec.id, restarts, flags.period
                ) from _cause(reason)
            if flags.backoff is not None:
                delay = flags.backoff.delay(restarts)
        self._restarts += 1
        await self._restart(slot, max(0.0, delay), restarts)

    async def _restart(self, failed: _Slot, delay: float, restarts: int) -> None:
        strategy = self._flags.strategy
        if strategy is Strategy.ONE_FOR_ONE:
            group = [failed]
        else:
            children = self._children
            plan = plan_restart(
                strategy,
                [(cid, slot.spec.restart) for cid, slot in children.items()],
                failed.spec.id,
            )
            for cid in plan.stop:
                await self._stop_slot(
                    children[cid], _TERMINATE if cid in plan.drop else _RESTART
                )
            group = [children[cid] for cid in plan.start]
        self._next_token += 1
        token = self._next_token
        name = self.name
        for slot in group:
            slot.state = _PENDING
            slot.token = token
            self._emit(
                ChildRestarted(
                    supervisor=name,
                    child_id=slot.spec.id,
                    incarnation=slot.incarnation + 1,
                    delay=delay,
                    restarts=restarts,
                )
            )
        if delay <= 0:
            self._due.update(group)
            return
        self._groups[token] = group
        assert self._tg is not None
        self._tg.start_soon(self._wake_at, token, self.clock.monotonic() + delay)

    async def _wake_at(self, token: int, deadline: float) -> None:
        await self.clock.sleep_until(deadline)
        mailbox = self._mailbox
        if self._serving and mailbox is not None and not mailbox.is_dead:
            mailbox.post_system(_RestartDue(token=token))

    # ------------------------------------------------------------ stopping children

    async def _terminate(self, child_id: str) -> None:
        slot = self._children[child_id]
        await self._stop_slot(slot, _DRAIN)

    async def _stop_all(self, mode: int) -> None:
        """Stop every child in reverse start order (``mode`` is drain or terminate)."""
        self._due.clear()
        self._groups.clear()
        for slot in reversed(list(self._children.values())):
            await self._stop_slot(slot, mode)

    async def _stop_slot(self, slot: _Slot, mode: int) -> None:
        self._due.discard(slot)
        if slot.alive:
            slot.state = _STOPPING
            if mode == _DRAIN:
                slot.mailbox.close_intake()
            else:
                slot.mailbox.post_system(STOP)
            policy = slot.spec.shutdown
            scope = slot.scope
            assert scope is not None
            if policy.kind == "brutal":
                scope.cancel()
            if slot.alive:
                event = slot.exit_event = anyio.Event()
                grace = policy.grace
                if grace != math.inf:
                    clock = self.clock
                    async with deadline_scope(clock, clock.monotonic() + grace):
                        await event.wait()
                    if slot.alive:
                        scope.cancel()
                await event.wait()
            if mode != _DRAIN:
                # A cancelled incarnation never read its stop request; the next one
                # must not inherit it (the mailbox belongs to the slot).
                with contextlib.suppress(ValueError):
                    slot.mailbox._system.remove(STOP)
        if mode == _RESTART:
            slot.state = _PENDING
        else:
            self._remove(slot, None)

    def _remove(self, slot: _Slot, cause: BaseException | None) -> None:
        slot.state = _DONE
        self._due.discard(slot)
        if self._children.get(slot.spec.id) is slot:
            del self._children[slot.spec.id]
        slot.mailbox.close(cause)

    # ------------------------------------------------------------------- events

    def _emit(self, event: SupervisionEvent) -> None:
        monitor = self._monitor
        if monitor is None:
            return
        try:
            monitor.on_event(event)
        except Exception:
            # A broken monitor must not take supervision down with it.
            logger.exception("actors.monitor.failed", event=type(event).__name__)

    def _emit_start_failure(
        self, child_id: str, incarnation: int, error: BaseException | None
    ) -> None:
        reason = Crashed.from_exception(error or ChildStartError(child_id))
        self._emit(
            ChildExited(
                supervisor=self.name,
                child_id=child_id,
                incarnation=incarnation,
                reason=reason,
                during_start=True,
            )
        )
