"""Fixtures for the actor toolkit's tests: every async test runs on three lanes.

asyncio, trio, and trio with an autojumping ``MockClock`` (anyio passes backend options
through), so code that waits on the real clock is also exercised in virtual time.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio.testing

from actors.testing import ManualClock, Recorder


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio"),
        pytest.param("trio-autojump", id="trio-autojump"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    if request.param == "trio-autojump":
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})
    return (request.param, {})


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()
