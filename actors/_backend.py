"""Backend primitives without backend detection on every call.

``anyio.Event()``, ``anyio.CancelScope()`` and ``anyio.lowlevel.checkpoint()``
look up the running async library on every call; on the actor hot path (a
mailbox wait, an ask's reply slot, a child's stop handle) that lookup cost more
than the object itself. On asyncio (found with one C call) the backend's own
classes are built directly, learnt from the first object anyio hands out;
anywhere else these are plain anyio calls.
"""

from __future__ import annotations

import asyncio
import math

import anyio
from anyio.lowlevel import checkpoint as _anyio_checkpoint

__all__ = ("checkpoint", "new_cancel_scope", "new_event", "running_loop")

_running_loop = asyncio._get_running_loop


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio event loop, or None on any other backend."""
    return _running_loop()


_event_class: type[anyio.Event] | None = None
_scope_class: type[anyio.CancelScope] | None = None


def new_event() -> anyio.Event:
    """Return a new event of the running backend."""
    global _event_class
    if _running_loop() is None:
        return anyio.Event()
    cls = _event_class
    if cls is None:
        event = anyio.Event()
        _event_class = type(event)
        return event
    return cls()


def new_cancel_scope(
    *, deadline: float = math.inf, shield: bool = False
) -> anyio.CancelScope:
    """Return a new cancel scope of the running backend."""
    global _scope_class
    if _running_loop() is None:
        return anyio.CancelScope(deadline=deadline, shield=shield)
    cls = _scope_class
    if cls is None:
        scope = anyio.CancelScope(deadline=deadline, shield=shield)
        _scope_class = type(scope)
        return scope
    return cls(deadline=deadline, shield=shield)


async def checkpoint() -> None:
    """Yield to the scheduler once (a cancellation point)."""
    if _running_loop() is None:
        await _anyio_checkpoint()
    else:
        # What anyio's asyncio backend does for a checkpoint.
        await asyncio.sleep(0)
