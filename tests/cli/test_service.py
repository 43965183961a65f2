"""``cloaca run`` as a real process: submit, inspect, stop with signals, resume.

Each test synchronises on lines the processes print (JSON log events on stderr,
``gate-started`` on stdout from the held task) and on a FIFO that holds the
``gate`` task, never on sleeps. A handful of processes per test keeps them fast.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import IO, Any

import pytest

from tests.cli.conftest import FLOWS, PG_URL, drop_schema

ROOT = Path(__file__).resolve().parents[2]
WAIT = 30.0
"""Safety net for one expected line; a healthy run needs well under a second."""


def cloaca(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cloaca.cli", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


class Service:
    """A running ``cloaca run`` whose output lines are read as they come."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cloaca.cli", "run", *argv, "--log-format", "json"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout: queue.Queue[str | None] = queue.Queue()
        self.stderr: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._pumps: list[threading.Thread] = []
        for stream, lines in (
            (self.process.stdout, self.stdout),
            (self.process.stderr, self.stderr),
        ):
            threading.Thread(
                target=self._pump, args=(stream, lines), daemon=True
            ).start()

    @staticmethod
    def _pump(stream: IO[str] | None, lines: queue.Queue[str | None]) -> None:
        assert stream is not None
        for line in stream:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    def _next(self, lines: queue.Queue[str | None], waiting_for: str) -> str:
        try:
            line = lines.get(timeout=WAIT)
        except queue.Empty:
            pytest.fail(f"no {waiting_for} within {WAIT}s; seen: {self.seen}")
        if line is None:
            pytest.fail(f"process ended before {waiting_for}; seen: {self.seen}")
        self.seen.append(line)
        return line

    def event(self, name: str, **fields: Any) -> dict[str, Any]:
        """Wait for log event ``name`` (with ``fields``) on stderr."""
        while True:
            line = self._next(self.stderr, f"event {name} {fields}")
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == name and all(
                record.get(k) == v for k, v in fields.items()
            ):
                return dict(record)

    def printed(self, text: str) -> None:
        """Wait for a line ``text`` on stdout."""
        while self._next(self.stdout, repr(text)) != text:
            pass

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def exit_code(self) -> int:
        return self.process.wait(timeout=WAIT)

    def kill(self) -> None:
        """Make sure the process is gone and its pipes are closed."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pump in self._pumps:
            pump.join(timeout=WAIT)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    variables = dict(os.environ)
    variables.pop("CLOACA_DATABASE_URL", None)
    variables["CLOACA_TEST_GATE"] = str(gate)
    variables["CLOACA_TEST_CALLS"] = str(tmp_path / "calls")
    return variables


def open_gate(env: dict[str, str]) -> None:
    """Let the held ``gate`` task finish (blocks until it is reading)."""
    with open(env["CLOACA_TEST_GATE"], "w", encoding="utf-8") as gate:
        gate.write("go\n")


def calls(env: dict[str, str]) -> list[str]:
    return Path(env["CLOACA_TEST_CALLS"]).read_text(encoding="utf-8").split()


def show(execution_id: str, db: list[str], env: dict[str, str]) -> dict[str, Any]:
    shown = cloaca("executions", "show", execution_id, *db, "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    data: dict[str, Any] = json.loads(shown.stdout)
    return data


def scrape(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}{path}", timeout=WAIT
        ) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_sigterm_mid_workflow_then_restart_finishes(
    tmp_path: Path, env: dict[str, str]
) -> None:
    db = ["--db", "sqlite://" + str(tmp_path / "service.db")]
    service = Service([*db, "--workflows", FLOWS, "--health-port", "0"], env)
    try:
        port = service.event("health.listening")["port"]
        service.event("cli.run.ready")
        assert scrape(port, "/healthz") == (200, '{"status": "ok"}\n')
        submitted = cloaca("execute", "cli_chain", *db, "--workflows", FLOWS, env=env)
        assert submitted.returncode == 0, submitted.stderr
        execution_id = submitted.stdout.strip()
        service.printed("gate-started")  # first done, gate running, last waiting

        service.signal(signal.SIGTERM)
        service.event("cli.run.stopping", signal="SIGTERM")
        status, _ = scrape(port, "/healthz")
        assert status == 503  # stopping: a load balancer takes it out
        held = show(execution_id, db, env)
        assert {t["task"]: t["status"] for t in held["tasks"]} == {
            "first": "Completed",
            "gate": "Running",
            "last": "NotStarted",
        }
        open_gate(env)  # the running attempt finishes; nothing new starts
        service.event("cli.run.stopped")
        assert service.exit_code() == 0
    finally:
        service.kill()
    stopped = show(execution_id, db, env)
    assert stopped["status"] == "Running"
    assert {t["task"]: t["status"] for t in stopped["tasks"]}["gate"] == "Completed"

    restarted = Service([*db, "--workflows", FLOWS], env)
    try:
        finished = restarted.event("execution.finished", execution_id=execution_id)
        assert finished["status"] == "Completed"
        restarted.signal(signal.SIGINT)
        restarted.event("cli.run.stopped")
        assert restarted.exit_code() == 0
    finally:
        restarted.kill()
    assert sorted(calls(env)) == ["first", "gate", "last"]  # each ran once
    done = show(execution_id, db, env)
    assert done["status"] == "Completed"
    assert done["context"]["trail"] == ["first", "gate", "last"]
    human = cloaca("executions", "show", execution_id, *db, env=env).stdout
    assert "status     Completed" in human
    assert "# completed" in human


def test_second_signal_exits_at_once_and_the_attempt_is_handed_back(
    tmp_path: Path, env: dict[str, str]
) -> None:
    db = ["--db", "sqlite://" + str(tmp_path / "service.db")]
    service = Service([*db, "--workflows", FLOWS, "--health-port", "0"], env)
    try:
        port = service.event("health.listening")["port"]
        service.event("cli.run.ready")
        execution_id = cloaca(
            "execute", "cli_chain", *db, "--workflows", FLOWS, env=env
        ).stdout.strip()
        service.printed("gate-started")
        service.signal(signal.SIGTERM)
        service.event("cli.run.stopping")
        service.signal(signal.SIGTERM)
        service.event("cli.run.forced_exit", signal="SIGTERM")
        assert service.exit_code() == 128 + signal.SIGTERM
    finally:
        service.kill()
    assert show(execution_id, db, env)["status"] == "Running"

    restarted = Service([*db, "--workflows", FLOWS, "--health-port", "0"], env)
    try:
        port = restarted.event("health.listening")["port"]
        restarted.printed("gate-started")  # recovery runs the interrupted attempt again
        open_gate(env)
        restarted.event("execution.finished", execution_id=execution_id)
        status, metrics = scrape(port, "/metrics")
        assert status == 200
        finished = (
            'cloaca_executions_finished_total{workflow="cli_chain",status="Completed"}'
        )
        assert f"{finished} 1" in metrics.splitlines()
        assert any(
            line.startswith(
                'cloaca_task_attempt_duration_seconds_count{workflow="cli_chain",'
                'task="gate",outcome="completed"}'
            )
            for line in metrics.splitlines()
        )
        restarted.signal(signal.SIGTERM)
        assert restarted.exit_code() == 0
    finally:
        restarted.kill()
    assert sorted(calls(env)) == ["first", "gate", "gate", "last"]
    done = show(execution_id, db, env)
    assert done["status"] == "Completed"
    gate = next(t for t in done["tasks"] if t["task"] == "gate")
    assert gate["recovery_attempts"] == 1


@pytest.mark.postgres
def test_run_and_execute_on_postgres(env: dict[str, str]) -> None:
    import uuid

    schema = "cli_" + uuid.uuid4().hex[:16]
    db = ["--db", PG_URL, "--schema", schema]
    env = {**env, "CLOACA_TEST_GATE": ""}
    try:
        service = Service([*db, "--workflows", FLOWS], env)
        try:
            service.event("cli.run.ready")
            submitted = cloaca(
                "execute", "cli_fails", *db, "--workflows", FLOWS, env=env
            )
            execution_id = submitted.stdout.strip()
            finished = service.event("execution.finished", execution_id=execution_id)
            assert finished["status"] == "Failed"
            assert "bad input" in finished["error"]
            service.signal(signal.SIGTERM)
            assert service.exit_code() == 0
        finally:
            service.kill()
        listed = cloaca(
            "executions", "list", *db, "--status", "Failed", "--json", env=env
        )
        assert [e["execution_id"] for e in json.loads(listed.stdout)] == [execution_id]
    finally:
        drop_schema(schema)


def test_bad_database_fails_fast_with_one_line(env: dict[str, str]) -> None:
    result = cloaca(
        "run", "--db", "mysql://u:secret@host/db", "--workflows", FLOWS, env=env
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        "cloaca: error: unsupported database URL 'mysql://u:***@host/db'"
    )
