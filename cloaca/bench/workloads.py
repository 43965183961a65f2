"""The standard workloads of ``cloaca bench``: their workflows, sizes and targets.

Every workload is a :class:`Workload`: which workflow it runs, how many executions,
how many in flight, which runner API drives it, which runner configuration it uses,
and the figures it is judged on. The workflows are registered in the process-global
registry under ``bench_*`` names by :func:`define_workflows` (idempotent, so a worker
process and a test can both call it). Task bodies are trivial (read the context, write
one small key) unless the workload says otherwise, and every task is a sync function:
sync tasks are what most users write, and they take the worker-thread path. The one
exception is ``cpu_async``: the ``cpu`` workload with ``async def`` bodies, which run
on the event loop's thread, to show what the worker threads' GIL hand-offs cost when
several runner processes saturate the machine.

Runner configuration per workload (``max_concurrent_tasks`` is at least the number
of attempts that can be ready at once, so no workload queues on the limiter):

========== ================================ ===========================
workload   in flight                        ``max_concurrent_tasks``
========== ================================ ===========================
simple     32 executions                    32
pipeline   32 executions                    32
parallel   32 executions                    96 (3 parallel tasks each)
latency    1 execution (``DefaultRunner``)  4 (the default)
wide       1 execution, 500 parallel tasks  64 (trivial bodies: more
                                            threads only add GIL churn)
chain      1 execution, 200 steps           4 (the default)
burst      10,000 executions at once        64
cpu        32 executions, 2 ms bodies       32
cpu_async  as ``cpu``, async bodies             32
user       ``--concurrency`` executions     max(4, ``--concurrency``)
========== ================================ ===========================
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Final, Literal

import msgspec

import cloaca
from cloaca import registry

__all__ = (
    "BACKENDS",
    "STANDARD",
    "TARGETS",
    "Target",
    "RATIO_WORKLOADS",
    "Workload",
    "calibrate_cpu",
    "define_workflows",
    "workload_named",
)

Api = Literal["async", "sync"]

SIMPLE: Final = "bench_simple"
CHAIN3: Final = "bench_chain3"
PARALLEL: Final = "bench_parallel"
WIDE: Final = "bench_wide"
CHAIN200: Final = "bench_chain200"
CPU: Final = "bench_cpu"
CPU_ASYNC: Final = "bench_cpu_async"

WIDE_TASKS: Final = 500
CHAIN_STEPS: Final = 200
CPU_BODY_SECONDS: Final = 0.002

BACKENDS: Final = ("sqlite", "postgres")


class Workload(msgspec.Struct, frozen=True, kw_only=True):
    """One standard workload.

    Attributes:
        name: What ``--workload`` selects.
        description: One line for the results table.
        workflow: The registered workflow name it executes.
        count: Measured executions (before ``--scale``).
        in_flight: Executions kept running at once (``count`` means all at once).
        max_concurrent_tasks: The runner's ``max_concurrent_tasks``.
        api: ``"async"`` drives an ``AsyncRunner``; ``"sync"`` calls
            ``DefaultRunner.execute`` from the worker's main thread.
        warmup: Executions run before the measured part (not counted).
        steps: Tasks per execution on the critical path (for ``ms_per_step``).
        figures: The figures the results table shows, the headline first.
    """

    name: str
    description: str
    workflow: str
    count: int
    in_flight: int
    max_concurrent_tasks: int
    api: Api = "async"
    warmup: int = 50
    steps: int = 1
    figures: tuple[str, ...] = ("workflows_per_s", "p50_ms", "p99_ms")

    def scaled(self, scale: float) -> Workload:
        """The workload with ``count`` and ``warmup`` multiplied by ``scale``.

        ``in_flight`` shrinks with ``count`` only where it means "all at once".
        """
        count = max(1, round(self.count * scale))
        warmup = max(1, round(self.warmup * scale)) if self.warmup else 0
        in_flight = count if self.in_flight == self.count else self.in_flight
        return msgspec.structs.replace(
            self, count=count, warmup=warmup, in_flight=in_flight
        )

    def with_in_flight(self, in_flight: int) -> Workload:
        """The workload with ``in_flight`` executions at once (``--concurrency``).

        ``max_concurrent_tasks`` grows so the new in-flight count is still served.
        """
        per_execution = max(1, self.max_concurrent_tasks // max(1, self.in_flight))
        return msgspec.structs.replace(
            self,
            in_flight=in_flight,
            max_concurrent_tasks=max(4, per_execution * in_flight),
        )


_CPU_WORKLOAD: Final = Workload(
    name="cpu",
    description="600 one-task workflows of ~2 ms pure-Python CPU, 1 vs 2 processes",
    workflow=CPU,
    count=600,
    in_flight=32,
    max_concurrent_tasks=32,
    warmup=20,
    figures=("ratio", "workflows_per_s_1", "workflows_per_s_n"),
)
STANDARD: Final[tuple[Workload, ...]] = (
    Workload(
        name="simple",
        description="2,000 one-task workflows, 32 in flight",
        workflow=SIMPLE,
        count=2000,
        in_flight=32,
        max_concurrent_tasks=32,
    ),
    Workload(
        name="pipeline",
        description="1,000 workflows of a 3-task chain, 32 in flight",
        workflow=CHAIN3,
        count=1000,
        in_flight=32,
        max_concurrent_tasks=32,
        steps=3,
    ),
    Workload(
        name="parallel",
        description="600 workflows root -> 3 parallel -> join, 32 in flight",
        workflow=PARALLEL,
        count=600,
        in_flight=32,
        max_concurrent_tasks=96,
        steps=3,
    ),
    Workload(
        name="latency",
        description="200 executions of the 3-task chain, one at a time",
        workflow=CHAIN3,
        count=200,
        in_flight=1,
        max_concurrent_tasks=4,
        api="sync",
        warmup=20,
        steps=3,
        figures=("p50_ms", "p95_ms", "p99_ms"),
    ),
    Workload(
        name="wide",
        description="one workflow root -> 500 parallel -> join",
        workflow=WIDE,
        count=1,
        in_flight=1,
        max_concurrent_tasks=64,
        warmup=1,
        steps=3,
        figures=("seconds",),
    ),
    Workload(
        name="chain",
        description="one workflow of 200 sequential tasks",
        workflow=CHAIN200,
        count=1,
        in_flight=1,
        max_concurrent_tasks=4,
        warmup=1,
        steps=CHAIN_STEPS,
        figures=("ms_per_step", "seconds"),
    ),
    Workload(
        name="burst",
        description="10,000 3-task chains submitted at once (AsyncRunner)",
        workflow=CHAIN3,
        count=10_000,
        in_flight=10_000,
        max_concurrent_tasks=64,
        warmup=100,
        steps=3,
        figures=("seconds", "peak_rss_mb", "workflows_per_s"),
    ),
    _CPU_WORKLOAD,
    msgspec.structs.replace(
        _CPU_WORKLOAD,
        name="cpu_async",
        description="cpu with async def bodies (on the loop thread), 1 vs 2 processes",
        workflow=CPU_ASYNC,
    ),
)

RATIO_WORKLOADS: Final = frozenset({"cpu", "cpu_async"})
"""Workloads measured with one process and with several: their figure is the ratio."""


def workload_named(name: str) -> Workload:
    """The standard workload called ``name``.

    Raises:
        KeyError: No standard workload has that name.
    """
    for workload in STANDARD:
        if workload.name == name:
            return workload
    raise KeyError(name)


def user_workload(workflow: str, executions: int, in_flight: int) -> Workload:
    """The ``user`` workload: the user's own workflow under load."""
    return Workload(
        name="user",
        description=f"{executions} executions of {workflow!r}, {in_flight} in flight",
        workflow=workflow,
        count=executions,
        in_flight=in_flight,
        max_concurrent_tasks=max(4, in_flight),
        warmup=min(50, max(1, executions // 10)),
    )


class Target(msgspec.Struct, frozen=True):
    """A performance target: ``figure`` must be ``op`` ``value``.

    Attributes:
        figure: The figure's key, e.g. ``"workflows_per_s"``.
        op: ``">="`` (at least) or ``"<="`` (at most).
        value: The threshold.
    """

    figure: str
    op: Literal[">=", "<="]
    value: float

    def met(self, measured: float) -> bool:
        """Whether ``measured`` meets the target."""
        return measured >= self.value if self.op == ">=" else measured <= self.value

    def describe(self) -> str:
        """E.g. ``>= 2,000``."""
        return f"{self.op} {self.value:,g}"


def _targets(
    sqlite: tuple[Target, ...], postgres: tuple[Target, ...]
) -> dict[str, tuple[Target, ...]]:
    return {"sqlite": sqlite, "postgres": postgres}


# The targets (2-core machine, medians).
TARGETS: Final[Mapping[str, Mapping[str, tuple[Target, ...]]]] = {
    "simple": _targets(
        (Target("workflows_per_s", ">=", 2000),),
        (Target("workflows_per_s", ">=", 1000),),
    ),
    "pipeline": _targets(
        (Target("workflows_per_s", ">=", 1000),),
        (Target("workflows_per_s", ">=", 500),),
    ),
    "parallel": _targets(
        (Target("workflows_per_s", ">=", 600),),
        (Target("workflows_per_s", ">=", 300),),
    ),
    "latency": _targets(
        (Target("p50_ms", "<=", 2), Target("p99_ms", "<=", 10)),
        (Target("p50_ms", "<=", 4), Target("p99_ms", "<=", 20)),
    ),
    "wide": _targets((Target("seconds", "<=", 0.25),), (Target("seconds", "<=", 0.5),)),
    "chain": _targets(
        (Target("ms_per_step", "<=", 0.5),), (Target("ms_per_step", "<=", 1),)
    ),
    "burst": _targets(
        (Target("seconds", "<=", 10), Target("peak_rss_mb", "<=", 400)),
        (Target("seconds", "<=", 20),),
    ),
    "cpu": _targets((), (Target("ratio", ">=", 1.7),)),
}


# -- the workflows ------------------------------------------------------------------


def _step(ctx: cloaca.Context) -> cloaca.Context:
    """A trivial body: read the context, write one small key."""
    ctx.set("step", (ctx.get("step") or 0) + 1)
    return ctx


def _burner(iterations: int) -> Callable[[cloaca.Context], cloaca.Context]:
    def burn(ctx: cloaca.Context) -> cloaca.Context:
        total = 0
        for i in range(iterations):
            total += i * i % 7
        ctx.set("burned", total)
        return ctx

    return burn


def _async_burner(iterations: int) -> Callable[[cloaca.Context], object]:
    burn = _burner(iterations)

    async def burn_async(ctx: cloaca.Context) -> cloaca.Context:
        return burn(ctx)

    return burn_async


def calibrate_cpu(seconds: float = CPU_BODY_SECONDS) -> int:
    """Loop iterations of the ``cpu`` body that take about ``seconds`` here."""
    burn = _burner(20_000)
    ctx = cloaca.Context()
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        burn(ctx)
        best = min(best, time.perf_counter() - started)
    return max(1, round(20_000 * seconds / best))


def _define(name: str, build: Callable[[], None]) -> None:
    if registry.get_workflow(name) is None:
        with cloaca.WorkflowBuilder(name) as builder:
            builder.description(f"cloaca bench workload {name}")
            build()


def _simple() -> None:
    cloaca.task(id="only")(_step)


def _chain(steps: int) -> Callable[[], None]:
    def build() -> None:
        previous: list[str] = []
        for index in range(steps):
            task_id = f"s{index:03d}"
            cloaca.task(id=task_id, dependencies=previous)(_step)
            previous = [task_id]

    return build


def _fan(width: int) -> Callable[[], None]:
    def build() -> None:
        cloaca.task(id="root")(_step)
        branches = [f"p{index:03d}" for index in range(width)]
        for task_id in branches:
            cloaca.task(id=task_id, dependencies=["root"])(_step)
        cloaca.task(id="join", dependencies=branches)(_step)

    return build


def define_workflows(cpu_iterations: int | None = None) -> None:
    """Register the standard workloads' workflows (idempotent).

    Args:
        cpu_iterations: Loop iterations of the ``cpu`` body; calibrated to about
            2 ms here when None. Pass the coordinator's figure to worker processes
            so every process burns the same work.
    """
    _define(SIMPLE, _simple)
    _define(CHAIN3, _chain(3))
    _define(PARALLEL, _fan(3))
    _define(WIDE, _fan(WIDE_TASKS))
    _define(CHAIN200, _chain(CHAIN_STEPS))
    if registry.get_workflow(CPU) is None:
        iterations = cpu_iterations or calibrate_cpu()

        def build_cpu() -> None:
            cloaca.task(id="burn")(_burner(iterations))

        def build_cpu_async() -> None:
            cloaca.task(id="burn")(_async_burner(iterations))

        _define(CPU, build_cpu)
        _define(CPU_ASYNC, build_cpu_async)
