"""``cloaca.storage.pg_connect``: a connect cancelled mid-handshake leaves nothing.

A plain ``asyncpg.connect`` cancelled while it negotiates reports
``ConnectionError: unexpected connection_lost() call`` to the loop (seen failing
a lease test in CI when a runner shut down while its pool was growing). The
cancellations land at several moments of the handshake; the sleeps place them,
they do not wait for anything.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from cloaca.storage.pg_connect import connect
from tests.storage import pg_support

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

MOMENTS = (0.0, 0.0001, 0.0002, 0.0003, 0.0005, 0.0007, 0.001, 0.0015, 0.002, 0.003)
"""Seconds after the start of a connect at which it is cancelled."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # asyncpg runs on asyncio only


async def connections_named(app: str) -> int:
    conn = await pg_support.connect()
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app
        )
        return int(count)
    finally:
        await conn.close()


async def test_a_cancelled_connect_reports_nothing_and_leaves_no_connection() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    app = f"cloaca-connect-{uuid.uuid4().hex[:8]}"
    try:
        for moment in MOMENTS:
            attempt = asyncio.ensure_future(
                connect(
                    host=pg_support.HOST,
                    port=pg_support.PORT,
                    user=pg_support.USER,
                    database=pg_support.DATABASE,
                    server_settings={"application_name": app},
                )
            )
            await asyncio.sleep(moment)
            attempt.cancel()
            try:
                conn = await attempt
            except asyncio.CancelledError:
                continue
            await conn.close()  # connected before the cancellation came
        # The abandoned handshakes finish on their own and close what they opened.
        with anyio.fail_after(10):
            while await connections_named(app):
                await anyio.lowlevel.checkpoint()
    finally:
        loop.set_exception_handler(previous)
    assert reported == []


async def test_a_connect_that_is_not_cancelled_returns_its_connection() -> None:
    conn = await connect(pg_support.URL)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()
