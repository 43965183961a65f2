"""The multi-process fault harness: runners SIGKILLed at random moments on PostgreSQL.

``run_harness(config)`` submits ``executions`` workflows (``flows.fault_chain``)
to a fresh schema, keeps ``runners`` runner processes (``runner_proc``) serving
it, and, driven by a seeded generator and by progress (task runs logged), SIGKILLs
a random runner, restarts it, and terminates the runners' database connections;
the runners also kill themselves at fault points (after a claim, around a commit,
after a task body). When every execution has ended it stops the runners
gracefully and checks every invariant from the database:

* each execution reached a final state, with the context its input implies;
* no acknowledged result was lost and no completion was recorded twice (one
  metadata row per completed task, none for others);
* re-runs of task bodies are bounded by the crashes and connection cuts;
* no lease is left, by a dead runner or any other, and no task offer;
* a ``Failed`` execution is only one whose task kept dying with its runner.

Short seeded mode runs in CI (``tests/faults/test_sigkill_harness.py``); the long
mode runs by command and prints its counts::

    .venv/bin/python -m tests.faults.harness --long [--seed N] [--restart-postgres]

``--restart-postgres`` restarts the server once mid-run with
``CLOACA_FAULT_PG_RESTART`` (a shell command, default ``pg_ctlcluster`` of the
local cluster); it disrupts every other user of the server, hence opt-in.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import msgspec

from cloaca import registry
from cloaca.storage import journal as j
from cloaca.storage.leases import lease_store_for
from cloaca.storage.postgres import PostgresStore
from cloaca.workflow import graph_of
from tests.faults import flows
from tests.storage import pg_support

ROOT = Path(__file__).resolve().parents[2]
MAX_CONCURRENT_TASKS = 4
"""What ``runner_proc`` configures; bounds the attempts one crash can interrupt."""


class Config(msgspec.Struct, frozen=True, kw_only=True):
    """One harness run."""

    seed: int = 1
    executions: int = 16
    runners: int = 3
    kills: int = 2
    connection_cuts: int = 1
    lease_ttl: float = 1.5
    kill_after_claim: float = 0.05
    kill_around_commit: float = 0.02
    kill_after_body: float = 0.02
    restart_postgres: bool = False
    deadline: float = 45.0


class Report(msgspec.Struct, kw_only=True):
    """What happened and what was found."""

    executions: int = 0
    completed: int = 0
    abandoned: int = 0
    crashes_injected: int = 0
    external_kills: int = 0
    self_kills: int = 0
    connection_cuts: int = 0
    postgres_restarts: int = 0
    task_runs: int = 0
    re_runs: int = 0
    re_run_bound: int = 0
    shared_claims: int = 0
    """Attempts runners claimed from another runner's offers (task-level
    sharing), as reported by runners that left gracefully: a lower bound."""
    seconds: float = 0.0
    kept: str | None = None
    violations: list[str] = msgspec.field(default_factory=list)


@dataclass
class _Runner:
    process: subprocess.Popen[str]
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    runner_id: str | None = None
    reader: threading.Thread | None = None

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit and its output to be read, then close it."""
        code = self.process.wait(timeout=timeout)
        if self.reader is not None:
            # The pipe reaches EOF once the process is gone: every line is queued.
            self.reader.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code

    def start_reading(self) -> None:
        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.lines.put(line.strip())

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()

    def wait_ready(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.process.poll() is not None:
                return False
            try:
                line = self.lines.get(timeout=0.05)
            except queue.Empty:
                continue
            if line.startswith("ready "):
                self.runner_id = line.split()[1]
                return True
        return False


class Harness:
    """Drives one run (see the module docstring)."""

    def __init__(self, config: Config, workdir: Path) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.schema = pg_support.new_schema_name("faults")
        self.app = f"cloaca_fault_{self.schema}"[:60]
        self.url = f"{pg_support.URL}?application_name={self.app}"
        self.runs_log = workdir / f"runs-{self.schema}.log"
        self.report = Report(executions=config.executions)
        self.runners: list[_Runner] = []
        self.incarnation = 0
        self.ids: dict[uuid.UUID, int] = {}

    # -- processes -----------------------------------------------------------

    def _spawn(self) -> _Runner:
        self.incarnation += 1
        c = self.config
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "CLOACA_FAULT_RUNS": str(self.runs_log),
            "CLOACA_FAULT_SEED": f"{c.seed}-{self.incarnation}",
            "CLOACA_FAULT_KILL_AFTER_CLAIM": str(c.kill_after_claim),
            "CLOACA_FAULT_KILL_AROUND_COMMIT": str(c.kill_around_commit),
            "CLOACA_FAULT_KILL_AFTER_BODY": str(c.kill_after_body),
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.runner_proc", self.url, self.schema,
             str(c.lease_ttl)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        runner = _Runner(process)
        runner.start_reading()
        return runner

    def _start_runner(self) -> None:
        # A runner may kill itself already during start-up (a claim at recovery).
        while True:
            runner = self._spawn()
            if runner.wait_ready(20):
                self.runners.append(runner)
                return
            if runner.process.poll() is None:
                runner.process.kill()
                runner.wait()
                self.report.violations.append("a runner did not start within 20 s")
                return
            self._count_exit(runner)

    def _count_exit(self, runner: _Runner) -> None:
        code = runner.wait()
        if code == -signal.SIGKILL:
            self.report.self_kills += 1
        else:
            self.report.violations.append(f"a runner exited with status {code}")

    def _reap(self) -> None:
        for runner in list(self.runners):
            if runner.process.poll() is not None:
                self.runners.remove(runner)
                self._count_exit(runner)
                self._start_runner()

    def _kill_one(self) -> None:
        if not self.runners:
            return
        runner = self.rng.choice(self.runners)
        self.runners.remove(runner)
        runner.process.send_signal(signal.SIGKILL)
        runner.wait()
        self.report.external_kills += 1
        self._start_runner()

    # -- database ------------------------------------------------------------

    async def _submit(self, numbers: range) -> None:
        workflow = registry.get_workflow(flows.WORKFLOW)
        assert workflow is not None
        graph = graph_of(workflow)
        store = PostgresStore(pg_support.URL, pool_size=1, schema=self.schema)
        await store.open()
        try:
            entries: list[j.JournalEvent] = []
            for n in numbers:
                execution_id = uuid.uuid4()
                self.ids[execution_id] = n
                entries.append(
                    j.ExecutionCreated(
                        execution_id=execution_id,
                        pipeline_name=flows.WORKFLOW,
                        pipeline_version=graph.version,
                        context_id=uuid.uuid4(),
                        context_json=json.dumps({"n": n}),
                        tasks=tuple(
                            j.NewTask(
                                id=uuid.uuid4(),
                                task_name=name,
                                max_attempts=flows.ATTEMPTS,
                            )
                            for name in graph.task_names
                        ),
                        at=datetime.now(UTC),
                    )
                )
            await store.apply(entries)
            leases = lease_store_for(store)
            assert leases is not None
            await leases.prepare()
            await leases.notify_work()
        finally:
            await store.close()

    async def _query(self, sql: str, *args: object) -> list[asyncpg.Record]:
        conn = await pg_support.connect()
        try:
            await conn.execute(f'SET search_path TO "{self.schema}"')
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def _unfinished(self) -> int:
        rows = await self._query(
            "SELECT count(*) FROM pipeline_executions"
            " WHERE status NOT IN ('Completed', 'Failed', 'Cancelled')"
        )
        return int(rows[0][0])

    async def _cut_connections(self) -> None:
        conn = await pg_support.connect()
        try:
            await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = $1",
                self.app,
            )
        finally:
            await conn.close()
        self.report.connection_cuts += 1

    def _restart_postgres(self) -> None:
        command = os.environ.get(
            "CLOACA_FAULT_PG_RESTART", "pg_ctlcluster --force $(pg_lsclusters -h | "
            "awk 'NR==1{print $1, $2}') restart"
        )  # fmt: skip
        subprocess.run(command, shell=True, check=True, timeout=120)
        self.report.postgres_restarts += 1

    # -- the run -------------------------------------------------------------

    def _runs(self) -> Counter[tuple[int, str]]:
        counts: Counter[tuple[int, str]] = Counter()
        if self.runs_log.exists():
            for line in self.runs_log.read_text().splitlines():
                n, task, _pid = line.split()
                if not n.lstrip("-").isdigit():
                    # A dependent of an abandoned task runs without its output
                    # (API.md 4.6); only completed executions' results are checked.
                    continue
                counts[(int(n), task)] += 1
        return counts

    def _progress(self) -> int:
        if not self.runs_log.exists():
            return 0
        with self.runs_log.open("rb") as f:
            return sum(1 for _ in f)

    async def run(self) -> Report:
        """Run, stop, check; the report's ``violations`` is empty on success."""
        c = self.config
        started = time.monotonic()
        flows.define()
        half = c.executions // 2
        try:
            await self._submit(range(half))
            for _ in range(c.runners):
                self._start_runner()
            await self._submit(range(half, c.executions))
            total_runs = c.executions * len(flows.TASKS)
            # Faults fire when the logged task runs pass these marks.
            marks = sorted(
                [("kill", self.rng.randint(1, total_runs)) for _ in range(c.kills)]
                + [
                    ("cut", self.rng.randint(1, total_runs))
                    for _ in range(c.connection_cuts)
                ]
                + ([("restart", total_runs // 2)] if c.restart_postgres else []),
                key=lambda m: m[1],
            )
            deadline = started + c.deadline
            while True:
                self._reap()
                progress = self._progress()
                while marks and progress >= marks[0][1]:
                    kind, _ = marks.pop(0)
                    if kind == "kill":
                        self._kill_one()
                    elif kind == "cut":
                        await self._cut_connections()
                    else:
                        self._restart_postgres()
                if not marks and await self._unfinished() == 0:
                    break
                if time.monotonic() > deadline:
                    self.report.violations.append(
                        f"{await self._unfinished()} executions unfinished after "
                        f"{c.deadline} s"
                    )
                    break
                # Pacing the driver between looks at progress, not a wait for a fact.
                await asyncio.sleep(0.02)
            await self._check_leases("while the runners still serve")
            self._stop_all()
            await self._check_leases("after every runner left")
            await self._check()
        finally:
            for runner in self.runners:
                if runner.process.poll() is None:
                    runner.process.kill()
                runner.wait()
            if self.report.violations:
                # Kept for a post-mortem; the report names them.
                self.report.kept = f"schema {self.schema}, runs log {self.runs_log}"
            else:
                await pg_support.drop_postgres_schema(self.schema)
                self.runs_log.unlink(missing_ok=True)
        self.report.crashes_injected = (
            self.report.external_kills + self.report.self_kills
        )
        self.report.seconds = round(time.monotonic() - started, 2)
        return self.report

    def _stop_all(self) -> None:
        for runner in self.runners:
            runner.process.send_signal(signal.SIGTERM)
        for runner in self.runners:
            try:
                code = runner.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.report.violations.append("a runner did not leave on SIGTERM")
                runner.process.kill()
                runner.wait()
                continue
            if code == -signal.SIGKILL:
                self.report.self_kills += 1  # a fault point fired while leaving
            elif code != 0:
                self.report.violations.append(f"a runner left with status {code}")
            self._count_shared(runner)
        self.runners = []

    def _count_shared(self, runner: _Runner) -> None:
        while True:
            try:
                line = runner.lines.get_nowait()
            except queue.Empty:
                return
            if line.startswith("left "):
                stats = json.loads(line.removeprefix("left "))
                self.report.shared_claims += int(stats.get("claimed", 0))

    async def _check_leases(self, when: str) -> None:
        rows = await self._query(
            "SELECT execution_id, runner_id FROM cloaca_execution_leases"
        )
        if rows:
            self.report.violations.append(f"{len(rows)} leases left {when}")
        offers = await self._query("SELECT task_execution_id FROM cloaca_task_offers")
        if offers and not self.runners:
            self.report.violations.append(f"{len(offers)} task offers left {when}")

    async def _check(self) -> None:
        report = self.report
        executions = await self._query(
            "SELECT e.id, e.status, e.error_details, c.value FROM pipeline_executions e"
            " LEFT JOIN contexts c ON c.id = e.context_id"
        )
        tasks = await self._query(
            "SELECT pipeline_execution_id, task_name, status, recovery_attempts,"
            " error_details FROM task_executions"
        )
        metadata = await self._query(
            "SELECT pipeline_execution_id, task_name, count(*) AS n"
            " FROM task_execution_metadata GROUP BY 1, 2"
        )
        meta = {(uuid.UUID(str(r[0])), r[1]): r["n"] for r in metadata}
        runs = self._runs()
        report.task_runs = sum(runs.values())
        if len(executions) != len(self.ids):
            report.violations.append(
                f"{len(executions)} executions stored, {len(self.ids)} submitted"
            )
        by_execution: dict[uuid.UUID, list[asyncpg.Record]] = {}
        for t in tasks:
            by_execution.setdefault(uuid.UUID(str(t[0])), []).append(t)
        for row in executions:
            execution_id = uuid.UUID(str(row["id"]))
            n = self.ids.get(execution_id)
            if n is None:
                report.violations.append(f"unknown execution {execution_id}")
                continue
            for t in by_execution.get(execution_id, []):
                short = t["task_name"].rsplit("::", 1)[1]
                count = meta.get((execution_id, t["task_name"]), 0)
                if t["status"] == "Completed":
                    if count != 1:
                        report.violations.append(
                            f"{n}/{short} completed with {count} metadata rows"
                        )
                    # In an abandoned execution the dependents of the dying task
                    # run without its output, so without ``n``: their runs are
                    # logged as "None" and cannot be told apart (seed 42 once
                    # abandoned two executions at their root task).
                    if runs[(n, short)] < 1 and row["status"] != "Failed":
                        report.violations.append(f"{n}/{short} completed, never ran")
                elif count:
                    report.violations.append(f"{n}/{short} {t['status']} has metadata")
            if row["status"] == "Completed":
                report.completed += 1
                final = json.loads(row["value"]) if row["value"] else None
                if final != flows.expected(n):
                    report.violations.append(f"execution {n} ended with {final}")
            elif row["status"] == "Failed":
                self._check_abandoned(n, by_execution.get(execution_id, []))
            else:
                report.violations.append(f"execution {n} ended {row['status']}")
        report.re_runs = sum(count - 1 for count in runs.values() if count > 1)
        # Each interrupted runner re-runs at most the bodies it was executing plus
        # those finished in the batch it had not committed yet; a connection cut
        # or a server restart interrupts every runner at once.
        crashes = report.external_kills + report.self_kills
        cuts = report.connection_cuts + report.postgres_restarts
        interruptions = crashes + cuts * self.config.runners
        report.re_run_bound = interruptions * 2 * MAX_CONCURRENT_TASKS
        if report.re_runs > report.re_run_bound:
            report.violations.append(
                f"{report.re_runs} re-runs for {interruptions} interruptions "
                f"(bound {report.re_run_bound})"
            )

    def _check_abandoned(self, n: int, tasks: list[asyncpg.Record]) -> None:
        """A Failed execution must be one whose task kept dying (its budget)."""
        self.report.abandoned += 1
        # Crashes count while the task is marked Running, whether or not its
        # body had begun, so the budget is read from the row, not the runs log.
        dying = [
            t
            for t in tasks
            if t["status"] == "Failed"
            and (t["error_details"] or "").startswith("ABANDONED")
            and t["recovery_attempts"] >= flows.ATTEMPTS
        ]
        if not dying:
            self.report.violations.append(f"execution {n} Failed without a dying task")


async def run_harness(config: Config, workdir: Path) -> Report:
    """Run the harness once (see the module docstring)."""
    return await Harness(config, workdir).run()


def main(argv: list[str] | None = None) -> int:
    """The long mode: ``python -m tests.faults.harness --long``; prints the counts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--long", action="store_true", help="long mode")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--restart-postgres", action="store_true")
    args = parser.parse_args(argv)
    seed = (
        args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    )
    failed = False
    for round_ in range(args.rounds):
        config = Config(seed=seed + round_)
        if args.long:
            config = msgspec.structs.replace(
                config,
                executions=200,
                kills=12,
                connection_cuts=4,
                lease_ttl=2.0,
                restart_postgres=args.restart_postgres,
                deadline=600.0,
            )
        report = asyncio.run(run_harness(config, Path("/tmp")))
        print(json.dumps({"seed": config.seed, **msgspec.structs.asdict(report)}))
        failed = failed or bool(report.violations)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
