"""Shared by the examples: where their database lives.

Each example takes an optional database URL as its first argument; by default it
uses a fresh SQLite file in the system temporary directory.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path


def database_url(name: str) -> str:
    """The URL given on the command line, or a new SQLite file for ``name``."""
    if len(sys.argv) > 1:
        return sys.argv[1]
    path = Path(tempfile.mkdtemp(prefix="cloaca-example-")) / f"{name}.db"
    return "sqlite://" + str(path)
