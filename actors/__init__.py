"""A small, generic, typed actor and supervision toolkit on anyio."""

from __future__ import annotations

__all__: tuple[str, ...] = ()
