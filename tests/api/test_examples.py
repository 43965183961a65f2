"""Every script in examples/ runs and succeeds (each asserts its own results)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPTS = sorted(p for p in EXAMPLES.glob("[0-9]*.py"))


def test_examples_exist() -> None:
    assert len(SCRIPTS) >= 6


def _param(script: Path) -> object:
    # The multi-tenant example needs the PostgreSQL server.
    marks = [pytest.mark.postgres] if "tenant" in script.stem else []
    return pytest.param(script, id=script.stem, marks=marks)


@pytest.mark.parametrize("script", [_param(s) for s in SCRIPTS])
def test_example_runs(script: Path, tmp_path: Path) -> None:
    url = "sqlite://" + str(tmp_path / "example.db")
    done = subprocess.run(
        [sys.executable, str(script), url],
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
