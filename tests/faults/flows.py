"""The workflows of the fault harness, imported by the harness and every runner.

``fault_chain`` is a diamond (``split`` -> ``left``/``right`` -> ``join``) whose
result is a pure function of the input ``n``, so the harness can check every
final context from the database. Each task body logs one line per run to the
file named by ``CLOACA_FAULT_RUNS`` (``n task pid``, one ``write`` on an
``O_APPEND`` descriptor, which survives a SIGKILL) and takes a few milliseconds,
so kills land mid-attempt. A runner may also kill itself right after a body's
work is done and before its result is committed (``CLOACA_FAULT_KILL_AFTER_BODY``,
a probability drawn from the runner's seeded generator).
"""

from __future__ import annotations

import os
import random
import signal

import anyio

import cloaca

WORKFLOW = "fault_chain"
TASKS = ("split", "left", "right", "join")
ATTEMPTS = 4
"""Each task's attempt budget, hence also how many crashes it survives."""

_rng = random.Random(os.environ.get("CLOACA_FAULT_SEED", "0"))


def expected(n: int) -> dict[str, object]:
    """The final context of the execution with input ``n``."""
    return {
        "n": n,
        "split": n * 2,
        "left": n * 2 + 1,
        "right": n * 2 + 2,
        "join": 6 * n + 3,
    }


def _log(n: object, task: str) -> None:
    path = os.environ.get("CLOACA_FAULT_RUNS")
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{n} {task} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


async def _work(n: object, task: str) -> None:
    _log(n, task)
    await anyio.sleep(_rng.uniform(0.002, 0.02))
    chance = float(os.environ.get("CLOACA_FAULT_KILL_AFTER_BODY", "0") or 0)
    if chance and _rng.random() < chance:
        # Finished, not yet committed: the result must be lost and re-run.
        os.kill(os.getpid(), signal.SIGKILL)


def define() -> None:
    """Register ``fault_chain`` in this process."""
    with cloaca.WorkflowBuilder(WORKFLOW):

        @cloaca.task(id="split", retry_attempts=ATTEMPTS)
        async def split(ctx: cloaca.Context) -> cloaca.Context:
            await _work(ctx.get("n"), "split")
            ctx.set("split", ctx.get("n") * 2)
            return ctx

        @cloaca.task(id="left", dependencies=["split"], retry_attempts=ATTEMPTS)
        async def left(ctx: cloaca.Context) -> cloaca.Context:
            await _work(ctx.get("n"), "left")
            ctx.set("left", (ctx.get("split") or 0) + 1)
            return ctx

        @cloaca.task(id="right", dependencies=["split"], retry_attempts=ATTEMPTS)
        async def right(ctx: cloaca.Context) -> cloaca.Context:
            await _work(ctx.get("n"), "right")
            ctx.set("right", (ctx.get("split") or 0) + 2)
            return ctx

        @cloaca.task(id="join", dependencies=["left", "right"], retry_attempts=ATTEMPTS)
        async def join(ctx: cloaca.Context) -> cloaca.Context:
            await _work(ctx.get("n"), "join")
            # Fallback pattern (API.md 4.6): an abandoned upstream gives nothing.
            parts = [ctx.get(k) for k in ("left", "right", "split")]
            if all(isinstance(p, int) for p in parts):
                ctx.set("join", sum(parts))
            return ctx
