"""Workflows for the ``cloaca`` command tests, loaded with ``--workflows``.

``cli_chain`` is ``first -> gate -> last``. When ``CLOACA_TEST_GATE`` names a
FIFO, ``gate`` prints ``gate-started`` on stdout and waits until a line is written
to it, so a test can hold the execution mid-workflow without sleeping. When
``CLOACA_TEST_CALLS`` names a file, every task appends its id to it, so a test can
count how often each task body ran. ``cli_fails`` fails its first task for good.
"""

from __future__ import annotations

import os

import cloaca


def _record(name: str) -> None:
    calls = os.environ.get("CLOACA_TEST_CALLS")
    if calls:
        with open(calls, "a", encoding="utf-8") as out:
            out.write(name + "\n")


with cloaca.WorkflowBuilder("cli_chain") as chain:
    chain.description("three steps; the middle one can be held at a gate")

    @cloaca.task()
    def first(ctx: cloaca.Context) -> cloaca.Context:
        _record("first")
        ctx.set("trail", ["first"])
        return ctx

    @cloaca.task(dependencies=["first"])
    def gate(ctx: cloaca.Context) -> cloaca.Context:
        _record("gate")
        fifo = os.environ.get("CLOACA_TEST_GATE")
        if fifo:
            print("gate-started", flush=True)
            with open(fifo, encoding="utf-8") as held:
                held.readline()
        ctx.set("trail", [*ctx.get("trail"), "gate"])
        return ctx

    @cloaca.task(dependencies=["gate"])
    def last(ctx: cloaca.Context) -> cloaca.Context:
        _record("last")
        ctx.set("trail", [*ctx.get("trail"), "last"])
        return ctx


with cloaca.WorkflowBuilder("cli_fails"):

    @cloaca.task(retry_attempts=1)
    def boom(ctx: cloaca.Context) -> cloaca.Context:
        raise ValueError("bad input")

    @cloaca.task(dependencies=["boom"])
    def after(ctx: cloaca.Context) -> cloaca.Context:
        ctx.set("after", True)
        return ctx
