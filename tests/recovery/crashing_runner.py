"""A runner process for the crash tests: run a workflow, get SIGKILLed mid-way.

Usage: ``python -m tests.recovery.crashing_runner DB_URL MARKER_DIR MODE``.
``extract`` completes; ``transform`` prints ``transform-started`` on stdout and
then blocks,
so the parent can kill the process while an attempt is running (MODE ``block``).
Every attempt appends a line to ``MARKER_DIR/calls`` so the parent can count runs.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import cloaca


def define(marker_dir: Path, block: bool) -> None:
    calls = marker_dir / "calls"

    def record(name: str) -> None:
        with calls.open("a") as f:
            f.write(name + "\n")

    with cloaca.WorkflowBuilder("crashy"):

        @cloaca.task(id="extract")
        def extract(ctx: cloaca.Context) -> cloaca.Context:
            record("extract")
            ctx.set("extracted", True)
            return ctx

        @cloaca.task(id="transform", dependencies=["extract"])
        def transform(ctx: cloaca.Context) -> cloaca.Context:
            record("transform")
            if block:
                print("transform-started", flush=True)
                threading.Event().wait()  # until SIGKILL
            ctx.set("transformed", True)
            return ctx

        @cloaca.task(id="load", dependencies=["transform"])
        def load(ctx: cloaca.Context) -> cloaca.Context:
            record("load")
            ctx.set("loaded", True)
            return ctx


def main() -> None:
    url, marker_dir, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    define(marker_dir, block=mode == "block")
    with cloaca.DefaultRunner(url) as runner:
        result = runner.execute("crashy", cloaca.Context({"run": mode}))
        (marker_dir / "result").write_text(result.execution_id)


if __name__ == "__main__":
    main()
