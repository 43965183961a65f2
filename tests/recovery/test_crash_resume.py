"""Crash safety: a SIGKILLed runner's execution is finished by the next runner.

Completed tasks are not re-run, the interrupted attempt runs again
(at-least-once), and a task that keeps dying with its process is failed after its
attempt budget instead of looping forever (API.md 4.14).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import cloaca
from tests.api.conftest import Database
from tests.recovery.crashing_runner import define

ROOT = Path(__file__).resolve().parents[2]


def start_blocking_runner(url: str, markers: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.recovery.crashing_runner",
            url,
            str(markers),
            "block",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )


def kill_when_transform_runs(process: subprocess.Popen[bytes]) -> None:
    """Block until the child reports the attempt running, then SIGKILL it."""
    try:
        assert process.stdout is not None
        # The child prints this line from inside the running attempt.
        assert process.stdout.readline().strip() == b"transform-started"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        if process.stdout is not None:
            process.stdout.close()


def only_execution_id(db_file: Path) -> str:
    with sqlite3.connect(db_file) as conn:
        rows = conn.execute("SELECT id FROM pipeline_executions").fetchall()
    assert len(rows) == 1
    return str(uuid.UUID(bytes=rows[0][0]))


def test_sigkill_mid_workflow_then_a_new_runner_finishes_it(tmp_path: Path) -> None:
    db_file = tmp_path / "crash.db"
    url = "sqlite://" + str(db_file)
    markers = tmp_path / "markers"
    markers.mkdir()
    kill_when_transform_runs(start_blocking_runner(url, markers))
    execution_id = only_execution_id(db_file)
    db = Database("sqlite", url, None)
    assert db.tasks(execution_id)["transform"].status == "Running"

    define(markers, block=False)
    with cloaca.DefaultRunner(url) as runner:
        runner._wait_for(execution_id)

    calls = (markers / "calls").read_text().split()
    assert calls.count("extract") == 1  # completed before the crash: not re-run
    assert calls.count("transform") == 2  # interrupted attempt ran again
    assert calls.count("load") == 1
    row = db.execution(execution_id)
    assert row.status == "Completed"
    tasks = db.tasks(execution_id)
    assert {k: t.status for k, t in tasks.items()} == {
        "extract": "Completed",
        "transform": "Completed",
        "load": "Completed",
    }
    assert tasks["transform"].recovery_attempts == 1
    assert row.context_json is not None
    assert '"loaded":true' in row.context_json
    with sqlite3.connect(db_file) as conn:
        events = conn.execute(
            "SELECT recovery_type, details FROM recovery_events"
        ).fetchall()
    assert [e[0] for e in events] == ["task_reset"]


def test_task_running_during_more_crashes_than_its_budget_is_failed(
    tmp_path: Path,
) -> None:
    db_file = tmp_path / "loop.db"
    url = "sqlite://" + str(db_file)
    markers = tmp_path / "markers"
    markers.mkdir()
    kill_when_transform_runs(start_blocking_runner(url, markers))
    execution_id = only_execution_id(db_file)
    # Pretend the task already died with its process as often as its budget (3).
    with sqlite3.connect(db_file) as conn:
        conn.execute(
            "UPDATE task_executions SET recovery_attempts = 3"
            " WHERE task_name LIKE '%::transform'"
        )

    define(markers, block=False)
    with cloaca.DefaultRunner(url) as runner:
        runner._wait_for(execution_id)

    db = Database("sqlite", url, None)
    row = db.execution(execution_id)
    assert row.status == "Failed"
    tasks = db.tasks(execution_id)
    assert tasks["transform"].status == "Failed"
    assert (tasks["transform"].error_details or "").startswith("ABANDONED:")
    assert "transform" in (row.error_details or "")
    # The dependent still ran (failure semantics of API.md 4.6), the body never did.
    assert tasks["load"].status == "Completed"
    assert (markers / "calls").read_text().split().count("transform") == 1


def test_recovery_can_be_switched_off(tmp_path: Path) -> None:
    db_file = tmp_path / "off.db"
    url = "sqlite://" + str(db_file)
    markers = tmp_path / "markers"
    markers.mkdir()
    kill_when_transform_runs(start_blocking_runner(url, markers))
    execution_id = only_execution_id(db_file)
    define(markers, block=False)
    config = cloaca.DefaultRunnerConfig(enable_recovery=False)
    with cloaca.DefaultRunner.with_config(url, config):
        pass
    db = Database("sqlite", url, None)
    assert db.tasks(execution_id)["transform"].status == "Running"
    assert db.execution(execution_id).status in ("Pending", "Running")
