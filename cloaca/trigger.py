"""Event triggers: ``@cloaca.trigger(...)`` and ``TriggerResult`` (API.md 3.11-3.12).

Registration only. The decorator validates its arguments when ``trigger(...)`` is called
(``poll_interval`` is parsed then), registers a :class:`TriggerSpec` in the
process-global trigger registry when applied (no ``WorkflowBuilder`` needed) and returns
the function unchanged. Polling and firing are the runtime's (API.md 4.13): it calls
``spec.function`` and reads the :class:`TriggerResult` it returns.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any, Final, TypeVar

import msgspec

from cloaca import registry, texts
from cloaca.context import Context, copy_value
from cloaca.errors import (
    ConfigurationTypeError,
    ConfigurationValueError,
    ContextTypeError,
)

__all__ = [
    "TriggerDecorator",
    "TriggerResult",
    "TriggerSpec",
    "parse_poll_interval",
    "trigger",
]

F = TypeVar("F", bound=Callable[..., Any])

_DURATION: Final = re.compile(r"\+?([0-9]+)(ms|s|m)?")
_UNIT_MS: Final = {"ms": 1, "s": 1000, "m": 60_000, None: 1000}
_U64_MAX: Final = 2**64 - 1
_I64_MAX: Final = 2**63 - 1


def parse_poll_interval(text: str) -> int:
    """Parse a ``poll_interval`` duration into milliseconds (API.md 3.11).

    An unsigned integer (optional leading ``+``) followed by ``ms``, ``s`` or ``m``, or
    a bare integer meaning seconds; surrounding whitespace is ignored.

    Raises:
        ValueError: anything else (``Invalid poll_interval: Invalid duration: <text>``,
            the text with surrounding whitespace removed), including values too large to
            store.
    """
    if not isinstance(text, str):
        raise ConfigurationTypeError(
            texts.ARGUMENT_TYPE.format(
                owner="trigger()",
                name="poll_interval",
                expected="str",
                type=type(text).__name__,
            )
        )
    trimmed = text.strip()
    match = _DURATION.fullmatch(trimmed)
    if match is not None:
        count = int(match.group(1))
        millis = count * _UNIT_MS[match.group(2)]
        # The count is a u64 in the reference; the total must fit a signed 64-bit
        # column.
        if count <= _U64_MAX and millis <= _I64_MAX:
            return millis
    raise ConfigurationValueError(texts.POLL_INTERVAL_INVALID.format(text=trimmed))


class TriggerSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One registered trigger, as the runtime polls it.

    Attributes:
        name: Unique trigger name.
        workflow: Name of the workflow a fire executes.
        poll_interval_ms: Minimum time between polls.
        allow_concurrent: Whether a fire may start while an identical one is in
            progress.
        function: The user's poll function (no arguments, returns a ``TriggerResult``).
        is_async: Whether ``function`` is a coroutine function.
    """

    name: str
    workflow: str
    poll_interval_ms: int
    allow_concurrent: bool
    function: Callable[[], Any]
    is_async: bool = False


class TriggerResult:
    """The outcome of one poll: skip, or fire (optionally with a context).

    Created only through :meth:`skip` and :meth:`fire`.
    """

    __slots__ = ("_context", "_fire")

    _fire: bool
    _context: dict[str, Any] | None

    def __init__(self) -> None:
        raise ConfigurationTypeError(
            texts.NOT_CONSTRUCTIBLE.format(name="TriggerResult")
        )

    @classmethod
    def _make(cls, fire: bool, context: dict[str, Any] | None) -> TriggerResult:
        result = cls.__new__(cls)
        result._fire = fire
        result._context = context
        return result

    @staticmethod
    def skip() -> TriggerResult:
        """The condition is not met: do not fire."""
        return TriggerResult._make(False, None)

    @staticmethod
    def fire(context: Context | None = None) -> TriggerResult:
        """The condition is met: fire, with a copy of ``context`` taken now.

        Raises:
            TypeError: ``context`` is neither a ``Context`` nor ``None``.
        """
        if context is None:
            return TriggerResult._make(True, None)
        if not isinstance(context, Context):
            raise ContextTypeError(
                texts.ARGUMENT_TYPE.format(
                    owner="TriggerResult.fire()",
                    name="context",
                    expected="Context or None",
                    type=type(context).__name__,
                )
            )
        return TriggerResult._make(True, copy_value(context._data))

    def is_fire_result(self) -> bool:
        """Whether this result fires."""
        return self._fire

    def is_skip_result(self) -> bool:
        """Whether this result skips."""
        return not self._fire

    def __repr__(self) -> str:
        if not self._fire:
            return "TriggerResult.Skip"
        return (
            "TriggerResult.Fire(None)"
            if self._context is None
            else "TriggerResult.Fire(<context>)"
        )


class TriggerDecorator:
    """The decorator ``trigger(...)`` returns (internal; not exported)."""

    __slots__ = ("_allow_concurrent", "_name", "_poll_interval_ms", "_workflow")

    def __init__(
        self,
        workflow: str,
        name: str | None,
        poll_interval_ms: int,
        allow_concurrent: bool,
    ) -> None:
        self._workflow = workflow
        self._name = name
        self._poll_interval_ms = poll_interval_ms
        self._allow_concurrent = allow_concurrent

    def __call__(self, func: F) -> F:
        """Register ``func`` as a trigger, replacing one of that name; return ``func``.

        Raises:
            TypeError: ``func`` is not callable, or has no ``__name__`` and no
                ``name=``.
        """
        if not callable(func):
            raise ConfigurationTypeError(
                texts.ARGUMENT_TYPE.format(
                    owner="@trigger",
                    name="func",
                    expected="a callable",
                    type=type(func).__name__,
                )
            )
        name = self._name if self._name is not None else getattr(func, "__name__", None)
        if not isinstance(name, str):
            raise ConfigurationTypeError(
                texts.ARGUMENT_TYPE.format(
                    owner="@trigger",
                    name="name",
                    expected="str",
                    type=type(name).__name__,
                )
            )
        registry.register_trigger(
            TriggerSpec(
                name=name,
                workflow=self._workflow,
                poll_interval_ms=self._poll_interval_ms,
                allow_concurrent=self._allow_concurrent,
                function=func,
                is_async=inspect.iscoroutinefunction(func),
            )
        )
        return func

    def __repr__(self) -> str:
        return f"<trigger decorator workflow={self._workflow!r}>"


def trigger(
    workflow: str,
    *,
    name: str | None = None,
    poll_interval: str = "5s",
    allow_concurrent: bool = False,
) -> TriggerDecorator:
    """Declare an event trigger: ``@cloaca.trigger("wf")`` above a poll function.

    The function takes no arguments and returns a :class:`TriggerResult`; a fire
    executes ``workflow`` (API.md 4.13).

    Args:
        workflow: Name of the workflow to execute on a fire (not checked now).
        name: Unique trigger name; defaults to the function's ``__name__``.
        poll_interval: ``"100ms"``, ``"5s"``, ``"2m"`` or a bare number of seconds.
        allow_concurrent: Allow a fire while an identical earlier fire is still running.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: an invalid ``poll_interval`` (``Invalid poll_interval: Invalid
            duration: <text>``).
    """
    owner = "trigger()"
    if not isinstance(workflow, str):
        raise ConfigurationTypeError(
            texts.ARGUMENT_TYPE.format(
                owner=owner,
                name="workflow",
                expected="str",
                type=type(workflow).__name__,
            )
        )
    if name is not None and not isinstance(name, str):
        raise ConfigurationTypeError(
            texts.ARGUMENT_TYPE.format(
                owner=owner,
                name="name",
                expected="str or None",
                type=type(name).__name__,
            )
        )
    if not isinstance(allow_concurrent, bool):
        raise ConfigurationTypeError(
            texts.ARGUMENT_TYPE.format(
                owner=owner,
                name="allow_concurrent",
                expected="bool",
                type=type(allow_concurrent).__name__,
            )
        )
    return TriggerDecorator(
        workflow, name, parse_poll_interval(poll_interval), allow_concurrent
    )
