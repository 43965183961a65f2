"""The structlog access point ``get_logger(name)``; cloaca never configures logging.

Log events are stable dotted names (``task.attempt.finished``) with the stable keys
``execution_id``, ``workflow``, ``task`` and ``attempt``. Applications (and the
``cloaca`` command) decide how events are rendered by calling ``structlog.configure()``
themselves.
"""

from __future__ import annotations

from typing import Any, Final

import structlog

__all__ = ["EVENT_KEYS", "get_logger"]

EVENT_KEYS: Final = ("execution_id", "workflow", "task", "attempt")
"""The keys every runtime event carries where they apply."""


def get_logger(name: str) -> Any:
    """Return a lazily bound structlog logger named ``name`` (usually ``__name__``).

    Args:
        name: The logger name, passed to structlog as its first positional argument.

    Returns:
        A structlog bound logger proxy; it resolves the configuration on first use, so
        it is
        safe to create at import time.
    """
    return structlog.get_logger(name)
