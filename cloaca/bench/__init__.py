"""The load benchmark suite behind ``cloaca bench``.

Internal: no stability guarantee.
"""

from __future__ import annotations

__all__ = ()
