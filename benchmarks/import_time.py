"""How long ``import cloaca`` takes in a fresh interpreter (issue 3: under 100 ms).

    python -m benchmarks.import_time [--runs 20]

Reports the median and minimum of ``-X importtime``'s cumulative figure for the
``cloaca`` package, which excludes interpreter start-up.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys


def one_run() -> float:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import cloaca"],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in reversed(done.stderr.splitlines()):
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == "cloaca":
            return int(parts[1]) / 1000
    raise RuntimeError("no import time line for cloaca")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="time `import cloaca`")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    samples = [one_run() for _ in range(args.runs)]
    print(
        f"import cloaca: median {statistics.median(samples):.1f} ms, "
        f"min {min(samples):.1f} ms over {args.runs} runs"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
