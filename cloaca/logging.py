"""cloaca's loggers: structlog events that stay quiet until the application decides.

Log events are stable dotted names (``task.attempt.finished``) with the stable keys
``execution_id``, ``workflow``, ``task`` and ``attempt``. cloaca never configures
logging. Once the application has called ``structlog.configure()`` (the ``cloaca``
command does), events go through its structlog pipeline. Until then they go to the
standard library logger of the same name, so a library user sees warnings and errors
on stderr as usual and no debug chatter on stdout, and a disabled level costs one
check on the hot path.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import structlog
from structlog.contextvars import get_contextvars

__all__ = ["EVENT_KEYS", "Logger", "get_logger"]

EVENT_KEYS: Final = ("execution_id", "workflow", "task", "attempt")
"""The keys every runtime event carries where they apply."""


class Logger:
    """A logger named like a module; see the module docstring for where events go."""

    __slots__ = ("_name", "_std")

    def __init__(self, name: str) -> None:
        self._name = name
        self._std = logging.getLogger(name)

    def _emit(
        self, level: int, method: str, event: str, fields: dict[str, Any]
    ) -> None:
        if structlog.is_configured():
            getattr(structlog.get_logger(self._name), method)(event, **fields)
            return
        if not self._std.isEnabledFor(level):
            return
        merged = {**get_contextvars(), **fields}
        rendered = " ".join(f"{key}={value!r}" for key, value in merged.items())
        self._std.log(level, "%s %s", event, rendered, exc_info=method == "exception")

    def debug(self, event: str, **fields: Any) -> None:
        """Log ``event`` at debug level."""
        self._emit(logging.DEBUG, "debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        """Log ``event`` at info level."""
        self._emit(logging.INFO, "info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        """Log ``event`` at warning level."""
        self._emit(logging.WARNING, "warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        """Log ``event`` at error level."""
        self._emit(logging.ERROR, "error", event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """Log ``event`` at error level with the exception being handled."""
        self._emit(logging.ERROR, "exception", event, fields)


def get_logger(name: str) -> Logger:
    """The logger for ``name`` (usually ``__name__``); safe to create at import time."""
    return Logger(name)
