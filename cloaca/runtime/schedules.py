"""Cron and trigger services of one runtime (issue 6 builds them here).

``start_schedules`` is called by ``Runtime.__aenter__`` once the core actors run;
it starts the cron and trigger actors under the actor system and returns the
object the public facades (``cloaca.schedules``) call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from actors import ActorSystem
    from cloaca.runtime.engine import Runtime


class Schedules:
    """The runtime side of the cron and trigger methods."""


async def start_schedules(runtime: Runtime, system: ActorSystem) -> Schedules:
    """Start the cron and trigger services of ``runtime``."""
    return Schedules()
