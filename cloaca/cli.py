"""The ``cloaca`` command: argument parsing only, then calls into the runner."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cloaca`` command line and return its exit code."""
    from cloaca import __version__

    parser = argparse.ArgumentParser(
        prog="cloaca", description="Durable workflow orchestration runtime."
    )
    parser.add_argument("--version", action="version", version=f"cloaca {__version__}")
    parser.parse_args(argv)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
