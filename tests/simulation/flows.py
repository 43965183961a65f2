"""The workflows of the simulation: pure functions of the input, async bodies.

Every body runs on the event loop (``async def``), records its run with the current
`Bodies` (``(key, task)``: the harness bounds re-runs with it) and takes a seeded
amount of simulated time, so crashes and halts land while attempts are in flight.

* ``sim_chain``: ``a -> b -> c``.
* ``sim_fan``: ``root -> p, q, r -> join`` (fan-out, fan-in).
* ``sim_flaky``: ``flaky -> after``; ``flaky`` fails its first run for each
  execution and succeeds under its retry policy.
* ``sim_doomed``: ``start -> doomed``, ``start, doomed -> cleanup``; ``doomed``
  always fails, so the execution fails after its attempt budget; ``cleanup`` still
  runs (a dependent runs once its dependencies are final, API.md 4.5) on the output
  of ``start`` alone.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import cloaca
from actors import ManualClock

WORKFLOWS = ("sim_chain", "sim_fan", "sim_flaky", "sim_doomed")

RETRY_ATTEMPTS = 3
"""The attempt budget of every task (so also how many crashes each survives)."""

DOOMED_ATTEMPTS = 2

TASKS: dict[str, tuple[str, ...]] = {
    "sim_chain": ("a", "b", "c"),
    "sim_fan": ("root", "p", "q", "r", "join"),
    "sim_flaky": ("flaky", "after"),
    "sim_doomed": ("start", "doomed", "cleanup"),
}

DESIGNED_FAILURES: dict[tuple[str, str], int] = {
    ("sim_flaky", "flaky"): 1,
    ("sim_doomed", "doomed"): DOOMED_ATTEMPTS,
}
"""Runs of a task that fail by design (each may be followed by a retry)."""


class Bodies:
    """What the task bodies of one simulation share: clock, randomness, run counts.

    Args:
        clock: The simulation's clock (bodies take time on it).
        rng: Seeded source of body durations.
        max_duration: Longest body, in simulated seconds.
    """

    def __init__(
        self, clock: ManualClock, rng: random.Random, max_duration: float
    ) -> None:
        self.clock = clock
        self.rng = rng
        self.max_duration = max_duration
        self.runs: Counter[tuple[str, str]] = Counter()

    async def work(self, ctx: cloaca.Context, task: str) -> int:
        """Record a run of ``task`` for the execution of ``ctx``; take some time."""
        key = str(ctx.get("key"))
        # A dependent of a task that failed for good runs on an empty context
        # (API.md 4.5): it cannot be told apart, so its runs are not counted.
        if ctx.get("key") is not None:
            self.runs[key, task] += 1
        runs = self.runs.get((key, task), 0)
        duration = self.rng.choice((0.0, self.rng.uniform(0.0, self.max_duration)))
        await self.clock.sleep(duration)
        return runs


CURRENT: Bodies | None = None
"""The `Bodies` of the simulation that is running (set by the harness)."""


def _bodies() -> Bodies:
    assert CURRENT is not None, "a simulation task ran outside a simulation"
    return CURRENT


def expected(workflow: str, n: int, key: str) -> dict[str, Any]:
    """The final context of a finished execution (``sim_doomed`` ends Failed)."""
    base: dict[str, Any] = {"key": key, "n": n}
    if workflow == "sim_chain":
        return {**base, "a": n + 1, "b": 2 * (n + 1), "c": 2 * (n + 1) + 3}
    if workflow == "sim_fan":
        return {
            **base,
            "root": n,
            "p": n + 1,
            "q": n + 2,
            "r": n + 3,
            "join": 3 * n + 6,
        }
    if workflow == "sim_flaky":
        return {**base, "flaky": n * 10, "after": n * 10 + 1}
    return {**base, "start": n, "cleanup": n + 1}


def define() -> None:
    """Register the four workflows."""
    retry: dict[str, Any] = {"retry_attempts": RETRY_ATTEMPTS, "retry_delay_ms": 200}

    with cloaca.WorkflowBuilder("sim_chain"):

        @cloaca.task(id="a", **retry)
        async def a(ctx: cloaca.Context) -> cloaca.Context:
            await _bodies().work(ctx, "a")
            ctx.set("a", ctx.get("n") + 1)
            return ctx

        @cloaca.task(id="b", dependencies=["a"], **retry)
        async def b(ctx: cloaca.Context) -> cloaca.Context:
            await _bodies().work(ctx, "b")
            ctx.set("b", 2 * ctx.get("a"))
            return ctx

        @cloaca.task(id="c", dependencies=["b"], **retry)
        async def c(ctx: cloaca.Context) -> cloaca.Context:
            await _bodies().work(ctx, "c")
            ctx.set("c", ctx.get("b") + 3)
            return ctx

    with cloaca.WorkflowBuilder("sim_fan"):

        @cloaca.task(id="root", **retry)
        async def root(ctx: cloaca.Context) -> cloaca.Context:
            await _bodies().work(ctx, "root")
            ctx.set("root", ctx.get("n"))
            return ctx

        def branch(name: str, plus: int) -> None:
            @cloaca.task(id=name, dependencies=["root"], **retry)
            async def body(ctx: cloaca.Context) -> cloaca.Context:
                await _bodies().work(ctx, name)
                ctx.set(name, ctx.get("root") + plus)
                return ctx

        branch("p", 1)
        branch("q", 2)
        branch("r", 3)

        @cloaca.task(id="join", dependencies=["p", "q", "r"], **retry)
        async def join(ctx: cloaca.Context) -> cloaca.Context:
            await _bodies().work(ctx, "join")
            ctx.set("join", ctx.get("p") + ctx.get("q") + ctx.get("r"))
            return ctx

    with cloaca.WorkflowBuilder("sim_flaky"):

        @cloaca.task(id="flaky", **retry)
        async def flaky(ctx: cloaca.Context) -> cloaca.Context:
            runs = await _bodies().work(ctx, "flaky")
            if runs == 1:
                raise ConnectionError("flaky: first run fails")
            ctx.set("flaky", ctx.get("n") * 10)
            return ctx

        @cloaca.task(id="after", dependencies=["flaky"], **retry)
        async def after(ctx: cloaca.Context) -> cloaca.Context:
            await _bodies().work(ctx, "after")
            ctx.set("after", ctx.get("flaky") + 1)
            return ctx

    with cloaca.WorkflowBuilder("sim_doomed"):

        @cloaca.task(id="start", **retry)
        async def start(ctx: cloaca.Context) -> cloaca.Context:
            await _bodies().work(ctx, "start")
            ctx.set("start", ctx.get("n"))
            return ctx

        @cloaca.task(
            id="doomed",
            dependencies=["start"],
            retry_attempts=DOOMED_ATTEMPTS,
            retry_delay_ms=100,
        )
        async def doomed(ctx: cloaca.Context) -> cloaca.Context:
            await _bodies().work(ctx, "doomed")
            raise ValueError("doomed: always fails")

        @cloaca.task(id="cleanup", dependencies=["start", "doomed"], **retry)
        async def cleanup(ctx: cloaca.Context) -> cloaca.Context:
            await _bodies().work(ctx, "cleanup")
            ctx.set("cleanup", ctx.get("start") + 1)
            return ctx
