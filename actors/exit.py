"""Why an actor stopped: `Normal`, `Shutdown` or `Crashed`, and `ErrorInfo` for crashes.

`ExitReason` is what a supervisor reads to decide a restart (a transient child restarts
only after `Crashed`), what a monitor sees in `ChildExited`, and what ``Actor.on_stop``
receives. `ErrorInfo` is the plain-data form of an exception (type name, message,
traceback text), so a crash can be journaled or sent as a message; the live exception
travels alongside it in `Crashed.exception` and is never meant to be persisted.
"""

from __future__ import annotations

import traceback as _traceback
from typing import Any, TypeAlias

import msgspec

__all__ = ("Crashed", "ErrorInfo", "ExitReason", "Normal", "Shutdown")


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """An exception as plain data.

    Attributes:
        type_name: The exception's class name, e.g. ``"ValueError"``.
        message: ``str(exception)``.
        traceback: The formatted traceback, when one was available.
    """

    type_name: str
    message: str
    traceback: str | None = None

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        """Build an `ErrorInfo` from a live exception.

        Args:
            exc: The exception to describe.

        Returns:
            Its type name, message and, if it was raised, its formatted traceback.
        """
        text = (
            "".join(_traceback.format_exception(exc))
            if exc.__traceback__ is not None
            else None
        )
        return cls(type_name=type(exc).__name__, message=str(exc), traceback=text)


class Normal(msgspec.Struct, frozen=True):
    """The actor finished on its own: it called ``stop(value)``.

    Attributes:
        value: The value given to ``Actor.stop``; how a one-shot child reports a result.
    """

    value: Any = None


class Shutdown(msgspec.Struct, frozen=True):
    """The actor was stopped by its supervisor or by the actor system (or cancelled)."""


class Crashed(msgspec.Struct, frozen=True):
    """The actor raised an exception.

    Attributes:
        error: The exception as plain data.
        exception: The live exception when available (not persisted, not compared
            across processes).
    """

    error: ErrorInfo
    exception: object = None

    @classmethod
    def from_exception(cls, exc: BaseException) -> Crashed:
        """Build a `Crashed` reason that carries both forms of ``exc``.

        Args:
            exc: The exception the actor raised.

        Returns:
            The exit reason.
        """
        return cls(ErrorInfo.from_exception(exc), exc)


#: Why an actor stopped.
ExitReason: TypeAlias = Normal | Shutdown | Crashed
