"""CI's short, seeded run of the fault harness (``tests/faults/harness.py``).

Three runner processes on one PostgreSQL schema; runners are SIGKILLed at seeded
progress marks and kill themselves at fault points (after a claim, around a
commit, after a task body); connections are cut once. Every invariant is checked
from the database. The long mode: ``python -m tests.faults.harness --long``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.harness import Config, run_harness

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


@pytest.mark.timeout(120)
async def test_sigkilled_runners_lose_nothing_and_record_nothing_twice(
    tmp_path: Path,
) -> None:
    report = await run_harness(Config(seed=20261204), tmp_path)
    assert report.violations == []
    assert report.completed + report.abandoned == report.executions == 16
    assert report.external_kills == 2
    assert report.connection_cuts == 1
    assert report.crashes_injected >= 2
    assert report.re_runs <= report.re_run_bound
