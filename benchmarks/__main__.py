"""``python -m benchmarks``: a thin runner of the ``cloaca bench`` suite.

The workloads live in ``cloaca.bench`` so that ``cloaca bench`` works from any
install; this module only forwards its arguments, e.g.
``python -m benchmarks --workload latency --db postgres --json out.json``.
"""

from __future__ import annotations

from cloaca.bench.command import main

if __name__ == "__main__":
    raise SystemExit(main())
