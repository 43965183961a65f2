"""The runtime's headline figures: 3-task chain latency and one-task throughput.

    python -m benchmarks.runtime_figures [--db sqlite|postgres|URL] [--repeat N]

A thin wrapper of the ``cloaca bench`` suite: it runs the ``latency`` workload
(200 executions of a 3-task chain, one at a time through ``DefaultRunner``) and
the ``simple`` workload (2,000 one-task workflows, 32 in flight through
``AsyncRunner``), each on a fresh database with warm-up and schema creation
outside the measured part. Any other ``cloaca bench`` option is passed through.
"""

from __future__ import annotations

import sys

from cloaca.bench.command import main as bench_main


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return bench_main(["--workload", "latency", "--workload", "simple", *args])


if __name__ == "__main__":
    raise SystemExit(main())
