"""One simulated run of the cloaca runtime, from a seed; and the invariants it must keep.

`simulate(config, directory)` runs, in this process, on one asyncio loop and a
`ManualClock` driven by `actors.simulation.drive_clock`:

* a seeded mix of executions (``flows``) submitted through ``Runtime.execute`` at
  seeded moments;
* a `SimTransport` that delays messages between the runtime's actors, crashes actors
  just before or after they handle a message, and halts the runner (the simulated
  SIGKILL: nothing in memory survives, the store refuses every later call);
* a `SimStore`: the real SQLite store code on a real file, inline on the loop, with
  seeded commit latency and commit failures;
* after a halt (or a supervisor escalation, which ends a runner just as surely), a new
  runner on the same file: start-up recovery resumes what was left, the executions not
  submitted yet are submitted to it, and the harness waits for the recovered ones.

Task ids, retry jitter, body durations and every fault come from the seed, so one seed
always gives the same `SimResult.trace`. `check` then reads the SQLite file and lists
every violated invariant (see its docstring).
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
import sqlite3
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from actors import ManualClock, SupervisorEscalation
from actors.simulation import (
    ORDER_SENT,
    Fault,
    FaultRule,
    RandomPolicy,
    SimTransport,
    drive_clock,
)
from cloaca import registry
from cloaca.config import RunnerSettings
from cloaca.runtime import state
from cloaca.runtime.engine import Runtime
from cloaca.runtime.errors import ExecutionLost
from cloaca.runtime.outcome import ExecutionOutcome
from cloaca.storage import sqlite_apply
from cloaca.storage.errors import StorageError

from . import flows
from .store import SimStore

MAX_CONCURRENT_TASKS = 2
SIM_TIME_LIMIT = 600.0
"""Simulated seconds after which a run that has not converged counts as hung."""
MAX_EPOCHS = 12


CORE_ACTORS = ("root/scheduler", "root/persistence", "root/executor", "root/tasks")
"""The runtime's actors an injected crash may strike (the ``full`` mode)."""

DEFAULT_CRASH_ACTORS = ("root/executor",)
"""What the default mode crashes: crashes of the scheduler or Persistence still find
known hangs (tests/simulation/README.md), so they are the ``full`` mode's."""


@dataclass
class SimConfig:
    """What one simulated run does; every choice inside it comes from ``seed``.

    Attributes:
        seed: The seed of everything.
        executions: How many executions are submitted.
        halts: Most runner halts (simulated SIGKILLs) injected.
        crashes: Most actor crashes injected.
        commit_failures: Most commit failures injected per runner.
        delay_probability: Chance that a message between actors is held.
        order: The transport's ordering guarantee (``actors.simulation``).
    """

    seed: int
    executions: int = 6
    halts: int = 2
    crashes: int = 3
    commit_failures: int = 2
    delay_probability: float = 0.3
    order: str = ORDER_SENT
    crash_actors: tuple[str, ...] = DEFAULT_CRASH_ACTORS
    crash_tasks: bool = True


@dataclass
class SimResult:
    """What a run did and what `check` found."""

    config: SimConfig
    trace: list[tuple[Any, ...]] = field(default_factory=list)
    acknowledged: dict[str, ExecutionOutcome] = field(default_factory=dict)
    lost: set[str] = field(default_factory=set)
    submitted: dict[str, tuple[str, int]] = field(default_factory=dict)
    runs: Counter[tuple[str, str]] = field(default_factory=Counter)
    writes: defaultdict[tuple[str, uuid.UUID], set[str]] = field(
        default_factory=lambda: defaultdict(set)
    )
    injected: dict[str, int] = field(default_factory=dict)
    runners: int = 0
    halts: int = 0
    escalations: int = 0
    failed_starts: int = 0
    commit_failures: int = 0
    sim_time: float = 0.0
    hung: bool = False
    violations: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line of counts."""
        return (
            f"seed {self.config.seed}: {len(self.submitted)} executions "
            f"({len(self.acknowledged)} acknowledged, {len(self.lost)} lost), "
            f"{self.runners} runners, "
            f"{self.halts} halts, {self.escalations} escalations, "
            f"{self.injected.get('crash', 0)} crashes, "
            f"{self.commit_failures} commit failures, "
            f"{sum(self.runs.values())} task runs, {len(self.trace)} trace events, "
            f"{self.sim_time:.3f} simulated s"
        )


MODES = {
    "default": {},
    "full": {"crash_actors": CORE_ACTORS},
    "per-sender": {"order": "per-sender"},
}
"""Named configurations (``CLOACA_SIM_MODE``); see tests/simulation/README.md."""


def config_for(seed: int, mode: str = "default") -> SimConfig:
    """The configuration of ``seed`` in ``mode``.

    Raises:
        ValueError: If ``mode`` is not one of `MODES`.
    """
    if mode not in MODES:
        raise ValueError(
            f"unknown simulation mode {mode!r}; use one of {sorted(MODES)}"
        )
    return SimConfig(seed=seed, **MODES[mode])  # type: ignore[arg-type]


# -- determinism -------------------------------------------------------------------


@contextlib.contextmanager
def seeded_ids(rng: random.Random) -> Iterator[None]:
    """Make the runtime's random ids (task rows, contexts, metadata) come from ``rng``."""
    saved_refill = state._refill_ids
    saved_bytes = sqlite_apply._random_id_bytes

    def refill() -> None:
        state._random_ids.append(uuid.UUID(int=rng.getrandbits(128), version=4).int)

    def id_bytes() -> bytes:
        return uuid.UUID(int=rng.getrandbits(128), version=4).bytes

    state._random_ids.clear()
    state._refill_ids = refill
    sqlite_apply._random_id_bytes = id_bytes
    try:
        yield
    finally:
        state._refill_ids = saved_refill
        sqlite_apply._random_id_bytes = saved_bytes
        state._random_ids.clear()


@contextlib.contextmanager
def registered_flows(bodies: flows.Bodies) -> Iterator[None]:
    saved = registry.snapshot()
    flows.CURRENT = bodies
    try:
        flows.define()
        yield
    finally:
        flows.CURRENT = None
        registry.restore(saved)


def settings() -> RunnerSettings:
    # No real-time deadlines (they would not follow the simulated clock); no cron.
    return RunnerSettings(
        max_concurrent_tasks=MAX_CONCURRENT_TASKS,
        task_timeout_seconds=0,
        pipeline_timeout_seconds=None,
        enable_cron_scheduling=False,
        scheduler_poll_interval_ms=100,
    )


def fault_rules(config: SimConfig) -> list[FaultRule]:
    """Where faults may strike: the runtime's actors, around their busiest messages."""
    core = config.crash_actors
    return [
        FaultRule(
            Fault.HALT_BEFORE,
            0.02,
            actors=("root/*",),
            messages=(
                "Append",
                "Flush",
                "AttemptSucceeded",
                "DispatchTask",
                "RunAttempt",
            ),
            budget=(config.halts + 1) // 2,
        ),
        FaultRule(
            Fault.HALT_AFTER,
            0.02,
            actors=("root/*",),
            messages=("Flush", "AttemptSucceeded", "Committed", "DispatchTask"),
            budget=config.halts // 2,
        ),
        FaultRule(Fault.CRASH_BEFORE, 0.01, actors=core, budget=config.crashes),
        FaultRule(Fault.CRASH_AFTER, 0.01, actors=core, budget=config.crashes),
        FaultRule(
            Fault.CRASH_BEFORE,
            0.02,
            actors=("root/tasks/*",),
            messages=("RunAttempt",),
            budget=min(1, config.crashes) if config.crash_tasks else 0,
        ),
    ]


async def _wait_for(runtime: Runtime, execution_id: uuid.UUID) -> None:
    # Persistence may crash while answering; the runtime asks again itself.
    await runtime.wait_for(execution_id)


def _unfinished(path: Path) -> list[uuid.UUID]:
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(path)) as db:
        try:
            rows = db.execute(
                "SELECT id FROM pipeline_executions"
                " WHERE status NOT IN ('Completed', 'Failed', 'Cancelled')"
                " ORDER BY started_at, id"
            ).fetchall()
        except sqlite3.OperationalError:
            return []
    return [uuid.UUID(bytes=row[0]) for row in rows]


# -- the run -----------------------------------------------------------------------


@dataclass
class _Submission:
    key: str
    workflow: str
    n: int
    at: float


class _Run:
    """The state of one simulation across its runners."""

    def __init__(self, config: SimConfig, directory: Path) -> None:
        self.config = config
        self.result = SimResult(config=config)
        rng = random.Random(config.seed)
        self.clock = ManualClock(start=0.0, wall_ms=1_800_000_000_000)
        policy = RandomPolicy(
            random.Random(rng.getrandbits(64)),
            delay_probability=config.delay_probability,
            max_delay=0.02,
            faults=fault_rules(config),
        )
        self.path = directory / f"sim-{config.seed}.db"
        self.url = "sqlite://" + str(self.path)
        self.bodies = flows.Bodies(self.clock, random.Random(rng.getrandbits(64)), 0.05)
        self.result.runs = self.bodies.runs
        self.store_rng = random.Random(rng.getrandbits(64))
        self.runtime_rng = random.Random(rng.getrandbits(64))
        self.id_rng = random.Random(rng.getrandbits(64))
        plan_rng = random.Random(rng.getrandbits(64))
        self.pending = [
            _Submission(
                key=f"x{i}",
                workflow=plan_rng.choice(flows.WORKFLOWS),
                n=plan_rng.randrange(100),
                at=round(plan_rng.uniform(0.0, 0.5), 6),
            )
            for i in range(config.executions)
        ]
        self.transport = SimTransport(
            self.clock, policy, order=config.order, on_halt=self._halt
        )
        self.scope: anyio.CancelScope | None = None
        self.store: SimStore | None = None

    def _halt(self) -> None:
        assert self.store is not None
        assert self.scope is not None
        self.store.kill()
        self.scope.cancel()

    def _idle(self) -> None:
        # Nothing can happen any more (or the time limit passed) before the end.
        self.result.hung = True
        if self.scope is not None:
            self.scope.cancel()

    async def _submit(self, runtime: Runtime, item: _Submission) -> None:
        await self.clock.sleep_until(item.at)
        self.pending.remove(item)
        self.result.submitted[item.key] = (item.workflow, item.n)
        try:
            outcome = await runtime.execute(
                item.workflow, json.dumps({"key": item.key, "n": item.n})
            )
        except ExecutionLost:
            # The runner says its creation never became durable.
            self.result.lost.add(item.key)
            return
        self.result.acknowledged[item.key] = outcome

    async def _runner(self) -> bool:
        """One runner's life; True once every execution is final."""
        result = self.result
        unfinished = _unfinished(self.path)
        self.store = store = SimStore(
            self.url,
            self.clock,
            self.store_rng,
            result.writes,
            max_latency=0.005,
            failure_probability=0.03 if self.config.commit_failures else 0.0,
            failure_budget=self.config.commit_failures,
        )
        self.scope = scope = anyio.CancelScope()
        result.runners += 1
        with scope:
            try:
                async with (
                    Runtime(
                        self.url,
                        settings(),
                        clock=self.clock,
                        rng=random.Random(self.runtime_rng.getrandbits(64)),
                        store=store,
                    ) as runtime,
                    anyio.create_task_group() as tg,
                ):
                    for execution_id in unfinished:
                        tg.start_soon(_wait_for, runtime, execution_id)
                    for item in list(self.pending):
                        tg.start_soon(self._submit, runtime, item)
            except SupervisorEscalation:
                # The root gave up: the runner is gone, as after a crash.
                result.escalations += 1
            except StorageError:
                # Start-up (recovery) failed on the database: the runner exits and
                # is started again, as a service manager would.
                result.failed_starts += 1
        result.commit_failures += store.failures
        self.transport.revive()
        if scope.cancelled_caught:
            if self.transport.halted or store.dead:
                result.halts += 1
            return False
        return not self.pending and not _unfinished(self.path)

    async def run(self) -> SimResult:
        result = self.result
        with seeded_ids(self.id_rng), registered_flows(self.bodies):
            async with anyio.create_task_group() as outer:
                outer.start_soon(
                    functools.partial(
                        drive_clock,
                        self.clock,
                        on_idle=self._idle,
                        until=SIM_TIME_LIMIT,
                    )
                )
                with self.transport.installed():
                    while not result.hung:
                        if result.runners >= MAX_EPOCHS:
                            result.violations.append(
                                f"not done after {MAX_EPOCHS} runners"
                            )
                            break
                        if await self._runner():
                            break
                outer.cancel_scope.cancel()
        result.trace = self.transport.trace
        injected = self.transport.injected
        result.injected = {
            "crash": injected[Fault.CRASH_BEFORE] + injected[Fault.CRASH_AFTER],
            "halt": injected[Fault.HALT_BEFORE] + injected[Fault.HALT_AFTER],
        }
        result.sim_time = self.clock.monotonic()
        if result.hung:
            result.violations.append(
                f"hung: no progress possible at {result.sim_time:.3f} simulated s "
                f"with {len(self.pending)} executions unsubmitted and "
                f"{len(_unfinished(self.path))} unfinished"
            )
        check(result, self.path)
        return result


async def simulate(config: SimConfig, directory: Path) -> SimResult:
    """Run the simulation of ``config`` on a new SQLite file in ``directory``."""
    return await _Run(config, directory).run()


def run(config: SimConfig, directory: Path) -> SimResult:
    """`simulate` on a fresh asyncio loop."""
    return anyio.run(simulate, config, directory, backend="asyncio")


# -- the invariants ----------------------------------------------------------------


def check(result: SimResult, path: Path) -> None:
    """Append to ``result.violations`` every invariant the database breaks.

    * every execution stored is final (Completed or Failed);
    * every acknowledged execution (``execute`` returned) is stored with the status,
      the final context and the task statuses it was acknowledged with;
    * every stored execution was submitted; a completed one has exactly the final
      context its input determines, a ``sim_doomed`` one failed;
    * each task completion was written once: a ``Completed`` task has one write
      marking it so and one metadata write; any other task has none;
    * no task ran more often than its designed failures, its retries and the
      injected faults (halts, crashes, commit failures) can explain.
    """
    violations = result.violations
    with contextlib.closing(sqlite3.connect(path)) as db:
        executions = db.execute(
            "SELECT e.id, e.pipeline_name, e.status, c.value"
            " FROM pipeline_executions e LEFT JOIN contexts c ON c.id = e.context_id"
        ).fetchall()
        tasks = db.execute(
            "SELECT id, pipeline_execution_id, task_name, status, attempt,"
            " coalesce(error_details, last_error), recovery_attempts"
            " FROM task_executions"
        ).fetchall()
    by_execution: dict[uuid.UUID, list[tuple[Any, ...]]] = {}
    for row in tasks:
        by_execution.setdefault(uuid.UUID(bytes=row[1]), []).append(row)
    stored_keys: dict[str, uuid.UUID] = {}
    failed: list[uuid.UUID] = []
    task_rows: dict[tuple[str, str], tuple[int, int]] = {}
    for raw_id, workflow, status, value in executions:
        execution_id = uuid.UUID(bytes=raw_id)
        final = json.loads(value) if value else {}
        key = final.get("key")
        if status not in ("Completed", "Failed"):
            violations.append(f"execution {key or execution_id} ended {status}")
        if key is not None:
            stored_keys[key] = execution_id
            submitted = result.submitted.get(key)
            if submitted is None:
                violations.append(f"execution {key} stored but never submitted")
            elif key in result.lost:
                violations.append(f"execution {key} reported lost but stored {status}")
            else:
                want = flows.expected(submitted[0], submitted[1], key)
                doomed = submitted[0] == "sim_doomed"
                if status == "Completed" and doomed:
                    violations.append(f"{key} ({workflow}) completed; it must fail")
                elif status == "Completed" and final != want:
                    violations.append(f"{key} ({workflow}) ended with {final}")
                elif status == "Failed" and not doomed:
                    failed.append(execution_id)
        for task_id, _, name, task_status, attempt, _, resets in by_execution.get(
            execution_id, []
        ):
            ident = uuid.UUID(bytes=task_id)
            short = name.rsplit("::", 1)[-1]
            if key is not None:
                task_rows[key, short] = (attempt, resets)
            marks = len(result.writes["completed", ident])
            metadata = len(result.writes["metadata", ident])
            want_writes = 1 if task_status == "Completed" else 0
            if marks != want_writes or metadata != want_writes:
                violations.append(
                    f"{key or execution_id}/{short} {task_status}: completion "
                    f"written {marks} times, metadata {metadata} times"
                )
    # Only an injected fault may fail a task that fails by design never: a crashed
    # task actor fails its task for good, recovery abandons a task that was running
    # during more crashes than its attempt budget.
    for execution_id in failed:
        errors = [
            str(t[5]) for t in by_execution.get(execution_id, []) if t[3] == "Failed"
        ]
        # Dependents of a failed task run on what completed (API.md 4.5) and may
        # fail on it in turn: one explained failure explains the execution.
        if not any("SimulatedCrash" in e or "ABANDONED" in e for e in errors):
            violations.append(f"execution {execution_id} failed: {errors}")
    for key, outcome in result.acknowledged.items():
        stored = stored_keys.get(key)
        if stored is None and outcome.status == "Completed":
            violations.append(f"acknowledged {key} ({outcome.status}) is not stored")
            continue
        row = next(
            (r for r in executions if uuid.UUID(bytes=r[0]) == outcome.execution_id),
            None,
        )
        if row is None:
            violations.append(f"acknowledged {key} ({outcome.status}) is not stored")
            continue
        if row[2] != outcome.status:
            violations.append(f"acknowledged {key} {outcome.status}, stored {row[2]}")
        stored_final = json.loads(row[3]) if row[3] else {}
        if (
            outcome.status == "Completed"
            and json.loads(outcome.final_context_json) != stored_final
        ):
            violations.append(f"acknowledged {key}: final context differs from stored")
        stored_tasks = {t[2]: t[3] for t in by_execution.get(outcome.execution_id, [])}
        told = {t.task_name: t.status for t in outcome.tasks}
        if told != stored_tasks:
            violations.append(
                f"acknowledged {key}: tasks {told}, stored {stored_tasks}"
            )
    _check_runs(result, task_rows)


def _check_runs(
    result: SimResult, rows: dict[tuple[str, str], tuple[int, int]]
) -> None:
    """Each task ran no more often than its attempts, resets and faults explain.

    ``rows`` maps (key, task) to the stored (attempt, recovery_attempts): attempts
    count the runs the retry policy allowed, recovery resets count the runs halts
    interrupted; a fault inside a runner (a crash, an escalation, a commit failure
    that crashed Persistence) makes the rebuilt scheduler re-run what was in flight
    without either counter moving, at most once per fault.
    """
    in_runner = (
        result.injected.get("crash", 0) + result.escalations + result.commit_failures
    )
    for (key, task), count in sorted(result.runs.items()):
        stored = rows.get((key, task))
        if stored is None:
            result.violations.append(f"{key}/{task} ran {count} times, is not stored")
            continue
        attempt, resets = stored
        if count > attempt + resets + in_runner:
            result.violations.append(
                f"{key}/{task} ran {count} times: more than its {attempt} attempts, "
                f"{resets} recovery resets and {in_runner} in-runner faults"
            )
