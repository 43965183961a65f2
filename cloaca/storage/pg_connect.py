"""Opening PostgreSQL connections that a cancellation cannot cut mid-handshake.

A cancelled ``asyncpg.connect`` abandons its TLS-negotiation future with an
exception nobody retrieves (``ConnectionError: unexpected connection_lost()
call``), which asyncio reports to the loop's exception handler: a log line for
every runner shut down while its pool was growing or its listener reopening,
and a failure in tests run by anyio. `connect` lets the handshake finish on its
own when its caller is cancelled and closes the connection it produced.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

__all__ = ("connect",)


async def connect(*args: Any, **kwargs: Any) -> Any:
    """``asyncpg.connect(*args, **kwargs)``; cancelling it drops the connection.

    Also the pool's ``connect`` (``asyncpg.create_pool(connect=connect)``).
    """
    attempt = asyncio.ensure_future(asyncpg.connect(*args, **kwargs))
    try:
        return await asyncio.shield(attempt)
    except asyncio.CancelledError:
        attempt.add_done_callback(_drop)
        raise


def _drop(attempt: asyncio.Future[Any]) -> None:
    """A connection nobody waits for any more: close it, or forget its error."""
    if attempt.cancelled():
        return
    if attempt.exception() is None:
        attempt.result().terminate()
