"""Storage backends behind one protocol (internal: no stability guarantee).

``open_store(url)`` picks the backend from the URL (API.md 4.15) and imports its
driver lazily, so ``import cloaca`` never loads aiosqlite or asyncpg.
"""

from __future__ import annotations

__all__ = ()
