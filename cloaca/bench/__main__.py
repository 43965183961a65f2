"""``python -m cloaca.bench``: the ``cloaca bench`` command without the CLI wrapper."""

from __future__ import annotations

from cloaca.bench.command import main

if __name__ == "__main__":
    raise SystemExit(main())
