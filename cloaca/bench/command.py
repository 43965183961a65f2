"""The ``cloaca bench`` sub-command (being written: the benchmark issue)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``cloaca bench`` on the ``cloaca`` command's sub-parsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench", help="run the load benchmark workloads"
    )
    return parser
