"""The load benchmark suite behind ``cloaca bench`` (internal: no stability guarantee)."""

from __future__ import annotations

__all__ = ()
