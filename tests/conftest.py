"""Shared fixtures: registry isolation around every test, and the anyio backend.

The task, workflow and trigger registries are process-global (API.md 1.3), so every test
runs between a snapshot and a restore of them: a workflow or trigger one test defines is
gone for the next, and a leaked ``with WorkflowBuilder`` stack entry cannot bleed over.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cloaca import registry


@pytest.fixture(autouse=True)
def reset_registries() -> Iterator[None]:
    """Restore the process-global registries after each test."""
    saved = registry.snapshot()
    try:
        yield
    finally:
        registry.restore(saved)


@pytest.fixture
def anyio_backend() -> str:
    """Run ``@pytest.mark.anyio`` tests on asyncio (the runtime's loop)."""
    return "asyncio"
