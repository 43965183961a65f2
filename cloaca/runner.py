"""DefaultRunner and AsyncRunner (being written; see the runtime issue)."""

from __future__ import annotations


class DefaultRunner:
    """Executes registered workflows durably (API.md 3.9)."""


class AsyncRunner:
    """The runtime on the caller's event loop (API.md section 0 item 5)."""
