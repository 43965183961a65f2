"""Test helpers: probes, recorders, fault injection and sequence assertions.

`Probe` is an actor that records what it receives (``await probe.expect(Type)``).
`Recorder` is a `Monitor` that records supervision events (``await
recorder.wait_for(...)``). `ScriptedChild` is a child factory whose incarnations follow
a script ("crash", "ok", "crash_on_start", ...) and record what happened to them;
`inject_crash` makes any running actor crash. `assert_sequence` compares events with a
template in which a set means "these, in any order" (after trio's
``check_sequence_matches``). Every wait has a timeout, so a test that goes wrong fails
instead of hanging.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Final, TypeVar

import anyio

from .actor import Actor, InjectFault
from .clock import ManualClock
from .exit import ExitReason
from .monitor import SupervisionEvent
from .ref import ActorRef
from .spec import ChildSpec, Restart, ShutdownPolicy

__all__ = (
    "STEPS",
    "ManualClock",
    "Probe",
    "Recorder",
    "ScriptedChild",
    "ScriptedCrash",
    "assert_sequence",
    "inject_crash",
)

T = TypeVar("T")

#: The steps a `ScriptedChild` script may contain.
STEPS: Final = frozenset(
    {"ok", "crash", "crash_on_start", "crash_on_message", "exit", "hang"}
)


class Probe(Actor[Any]):
    """An actor that records every message it receives.

    One instance serves every incarnation (so nothing recorded is lost to a restart).

    Args:
        reply: Computes the reply to an ask from the message (None replies None).
    """

    mailbox_capacity: ClassVar[float] = 10_000

    def __init__(self, reply: Callable[[Any], Any] | None = None) -> None:
        self.messages: list[Any] = []
        self._reply = reply
        self._cursor = 0
        self._arrived: anyio.Event | None = None

    def spec(self, id: str = "probe") -> ChildSpec:
        """Return a temporary child spec that runs this probe."""
        return ChildSpec(id, lambda: self, Restart.TEMPORARY, ShutdownPolicy.brutal())

    async def handle(self, message: Any) -> Any:
        """Record ``message`` and return the configured reply."""
        self.messages.append(message)
        if self._arrived is not None:
            self._arrived.set()
            self._arrived = None
        return self._reply(message) if self._reply is not None else None

    async def expect(
        self,
        kind: type[T],
        predicate: Callable[[T], bool] | None = None,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - a safety net, not a deadline to honour
    ) -> T:
        """Wait for the next message of type ``kind`` (optionally matching predicate).

        Messages are consumed in order: a later `expect` only looks at messages that
        arrived after the one the previous `expect` returned.

        Raises:
            TimeoutError: If no such message arrives within ``timeout`` seconds.
        """
        with anyio.fail_after(timeout):
            while True:
                messages = self.messages
                for index in range(self._cursor, len(messages)):
                    message = messages[index]
                    if isinstance(message, kind) and (
                        predicate is None or predicate(message)
                    ):
                        self._cursor = index + 1
                        return message
                if self._arrived is None:
                    self._arrived = anyio.Event()
                await self._arrived.wait()


class Recorder:
    """A `Monitor` that records every supervision event."""

    def __init__(self) -> None:
        self.events: list[SupervisionEvent] = []
        self._changed: anyio.Event | None = None

    def on_event(self, event: SupervisionEvent) -> None:
        """Record ``event``."""
        self.events.append(event)
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def of_type(self, kind: type[T]) -> list[T]:
        """Return the recorded events of type ``kind``, in order."""
        return [event for event in self.events if isinstance(event, kind)]

    def clear(self) -> None:
        """Forget the recorded events."""
        self.events.clear()

    async def wait_for(
        self,
        predicate: Callable[[SupervisionEvent], bool] | type[Any],
        *,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - a safety net, not a deadline to honour
    ) -> SupervisionEvent:
        """Wait until ``count`` recorded events match and return the last of them.

        Args:
            predicate: A test on an event, or an event type.
            count: How many matching events to wait for (counted from the start).
            timeout: Safety net, in seconds.

        Raises:
            TimeoutError: If they do not all arrive within ``timeout`` seconds.
        """
        test = _as_predicate(predicate)
        with anyio.fail_after(timeout):
            while True:
                seen = 0
                for event in self.events:
                    if test(event):
                        seen += 1
                        if seen == count:
                            return event
                if self._changed is None:
                    self._changed = anyio.Event()
                await self._changed.wait()


def _as_predicate(
    predicate: Callable[[Any], bool] | type[Any],
) -> Callable[[Any], bool]:
    if isinstance(predicate, type):
        kind = predicate
        return lambda event: isinstance(event, kind)
    return predicate


class ScriptedCrash(Exception):
    """The crash a `ScriptedChild` was told to have."""


class ScriptedChild:
    """A child factory whose incarnations follow a script (fault injection).

    Step ``script[n - 1]`` governs incarnation ``n``; incarnations past the end run
    ``"ok"``. Steps:

    - ``"ok"``: start and handle messages; the reply to an ask is ``reply(message)``
      (the message itself by default);
    - ``"crash"``: start, then crash before handling any message;
    - ``"crash_on_start"``: raise in ``on_start``;
    - ``"crash_on_message"``: start, then crash while handling the first message;
    - ``"exit"``: start, then exit `Normal` with the incarnation number as value;
    - ``"hang"``: start, then block forever in the first message (until cancelled).

    Pass the instance as a `ChildSpec` factory. It records, across incarnations,
    `incarnations` (each one whose ``on_start`` ran), `messages` as ``(incarnation,
    message)`` and `stops` as ``(incarnation, reason)``.

    Args:
        script: One step per incarnation.
        reply: Computes the reply to an ask.

    Raises:
        ValueError: If a step is unknown.
    """

    def __init__(
        self, script: Sequence[str] = (), *, reply: Callable[[Any], Any] | None = None
    ) -> None:
        unknown = [step for step in script if step not in STEPS]
        if unknown:
            raise ValueError(
                f"unknown script steps {unknown!r}; valid: {', '.join(sorted(STEPS))}"
            )
        self.script = tuple(script)
        self.reply = reply
        self.incarnations: list[int] = []
        self.messages: list[tuple[int, Any]] = []
        self.stops: list[tuple[int, ExitReason]] = []

    def step_for(self, incarnation: int) -> str:
        """Return the step that governs ``incarnation``."""
        if 0 < incarnation <= len(self.script):
            return self.script[incarnation - 1]
        return "ok"

    def __call__(self) -> Actor[Any]:
        """Build the actor of the next incarnation."""
        return _ScriptedActor(self)


class _ScriptedActor(Actor[Any]):
    def __init__(self, owner: ScriptedChild) -> None:
        self._owner = owner
        self._step = "ok"

    async def on_start(self) -> None:
        incarnation = self.incarnation
        self._owner.incarnations.append(incarnation)
        step = self._step = self._owner.step_for(incarnation)
        if step == "crash_on_start":
            raise ScriptedCrash(
                f"scripted crash in on_start of incarnation {incarnation}"
            )
        if step == "crash":
            inject_crash(
                self.ref, ScriptedCrash(f"scripted crash of incarnation {incarnation}")
            )
        elif step == "exit":
            self.stop(incarnation)

    async def handle(self, message: Any) -> Any:
        self._owner.messages.append((self.incarnation, message))
        if self._step == "crash_on_message":
            raise ScriptedCrash(
                f"scripted crash on a message in incarnation {self.incarnation}"
            )
        if self._step == "hang":
            await anyio.sleep_forever()
        reply = self._owner.reply
        return reply(message) if reply is not None else message

    async def on_stop(self, reason: ExitReason) -> None:
        self._owner.stops.append((self.incarnation, reason))


def inject_crash(ref: ActorRef[Any], error: BaseException | None = None) -> None:
    """Make the actor behind ``ref`` crash once it finishes its current message.

    The crash is delivered on the priority lane, ahead of queued messages.

    Args:
        ref: The actor.
        error: The exception it raises (a `ScriptedCrash` by default).

    Raises:
        ActorDeadError: If the actor is stopped.
    """
    ref._mailbox.post_system(
        InjectFault(error=error if error is not None else ScriptedCrash("injected"))
    )


def _matches(matcher: object, event: object) -> bool:
    if isinstance(matcher, type):
        return isinstance(event, matcher)
    if isinstance(matcher, tuple):
        kind, *fields = matcher
        if not isinstance(event, kind):
            return False
        names = ("child_id", "incarnation")
        return all(
            getattr(event, name) == value
            for name, value in zip(names, fields, strict=False)
        )
    if callable(matcher):
        return bool(matcher(event))
    return matcher == event


def _group_matches(group: Sequence[object], chunk: Sequence[object]) -> bool:
    if len(group) <= 6:
        return any(
            all(_matches(m, e) for m, e in zip(order, chunk, strict=True))
            for order in itertools.permutations(group)
        )
    remaining = list(group)
    for event in chunk:
        for index, matcher in enumerate(remaining):
            if _matches(matcher, event):
                del remaining[index]
                break
        else:
            return False
    return True


def assert_sequence(events: Sequence[object], template: Sequence[object]) -> None:
    """Assert that ``events`` match ``template`` exactly, element by element.

    A template element is a type (isinstance), a tuple ``(type, child_id)`` or
    ``(type, child_id, incarnation)``, a predicate, or a value compared with ``==``.
    A set or frozenset of such elements matches that many events in any order.

    Raises:
        AssertionError: Describing the first mismatch.
    """
    events = list(events)
    position = 0
    for item in template:
        if isinstance(item, set | frozenset):
            group = list(item)
            chunk = events[position : position + len(group)]
            if len(chunk) < len(group) or not _group_matches(group, chunk):
                raise AssertionError(
                    f"events {position}..{position + len(group) - 1} {chunk!r} "
                    f"do not match (in any order) {group!r}\nall events: {events!r}"
                )
            position += len(group)
            continue
        if position >= len(events):
            raise AssertionError(
                f"expected {item!r} at {position}, but there are only {len(events)} "
                f"events: {events!r}"
            )
        if not _matches(item, events[position]):
            raise AssertionError(
                f"event {position} {events[position]!r} does not match {item!r}\n"
                f"all events: {events!r}"
            )
        position += 1
    if position != len(events):
        raise AssertionError(
            f"unexpected events after the template: {events[position:]!r}"
        )
