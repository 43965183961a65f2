"""The cron and trigger methods of the runners (API.md 3.9.4-3.9.5; issue 6).

``CronTriggerMethods`` is mixed into ``DefaultRunner`` (blocking methods) and
``AsyncCronTriggerMethods`` into ``AsyncRunner`` (awaitable methods). Both
delegate to the runtime's ``Schedules`` (``cloaca.runtime.schedules``).
"""

from __future__ import annotations


class CronTriggerMethods:
    """Blocking cron and trigger management methods of ``DefaultRunner``."""


class AsyncCronTriggerMethods:
    """Awaitable cron and trigger management methods of ``AsyncRunner``."""
