"""The internal `Envelope`: a request waiting for its reply (the ask side of a mailbox).

A tell travels through a mailbox as the bare message (no allocation per message); an ask
travels wrapped in an `Envelope`, which holds the message and a one-shot reply slot. The
reply channel lives here and never in the message, so messages stay pure data. Pykka's
``_envelope.py`` is the model.
"""

from __future__ import annotations

from typing import Any, Final

from ._backend import new_event
from .errors import ActorDeadError

__all__ = ("Envelope",)

_UNSET: Final = object()


class Envelope:
    """A message plus a one-shot reply slot.

    Args:
        message: The request.
    """

    __slots__ = (
        "_actor",
        "_cause",
        "_error",
        "_event",
        "_failure",
        "_value",
        "message",
    )

    def __init__(self, message: Any) -> None:
        self.message = message
        self._event = new_event()
        self._value: Any = _UNSET
        self._failure: str | None = None
        self._actor: str | None = None
        self._cause: BaseException | None = None
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        """Whether a reply or a failure has been recorded."""
        return self._event.is_set()

    def resolve(self, value: Any) -> None:
        """Record the reply; later replies and failures are ignored."""
        if not self._event.is_set():
            self._value = value
            self._event.set()

    def fail(
        self, message: str, *, actor: str | None, cause: BaseException | None = None
    ) -> None:
        """Record that no reply will come; the asker gets `ActorDeadError`.

        Args:
            message: The error message for the asker.
            actor: Name of the actor that was asked.
            cause: The crash that prevented the reply, kept as ``__cause__``.
        """
        if not self._event.is_set():
            self._failure = message
            self._actor = actor
            self._cause = cause
            self._event.set()

    def reject(self, error: BaseException) -> None:
        """Record that the request failed; the asker gets ``error`` itself.

        Used by the toolkit's own control requests (e.g. a `ChildStartError` for
        ``start_child``); user asks only ever fail with `ActorDeadError`.
        """
        if not self._event.is_set():
            self._error = error
            self._event.set()

    async def wait(self) -> None:
        """Wait until the reply or the failure is recorded."""
        await self._event.wait()

    def result(self) -> Any:
        """Return the reply.

        Raises:
            ActorDeadError: If the actor stopped or crashed before replying.
            Exception: The error a control request was rejected with.
        """
        if self._error is not None:
            raise self._error
        if self._failure is not None:
            raise ActorDeadError(self._failure, actor=self._actor) from self._cause
        return self._value
