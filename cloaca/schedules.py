"""The cron and trigger methods of the runners (API.md 3.9.4-3.9.5).

``CronTriggerMethods`` is mixed into ``DefaultRunner`` (blocking methods, run on
the runtime's loop through ``DefaultRunner._call``) and
``AsyncCronTriggerMethods`` into ``AsyncRunner`` (awaitable methods). Both check
argument types here (``TypeError``; a negative ``limit``/``offset`` is an
``OverflowError``, as for the reference's unsigned integers), apply the API's
defaults (``None`` means the default, also when passed positionally) and delegate
to the runtime's ``Schedules`` (``cloaca.runtime.schedules``), which raises the
API's ``ValueError`` texts.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from cloaca import texts
from cloaca.errors import ConfigurationOverflowError, ConfigurationTypeError

if TYPE_CHECKING:
    from cloaca.runtime.engine import Runtime
    from cloaca.runtime.schedules import Schedules

__all__ = ("AsyncCronTriggerMethods", "CronTriggerMethods")

T = TypeVar("T")

DEFAULT_LIMIT = 100
"""API.md 3.9.4-3.9.5: ``limit`` when ``None``."""


def _str(owner: str, name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigurationTypeError(
            texts.ARGUMENT_TYPE.format(
                owner=owner, name=name, expected="str", type=type(value).__name__
            )
        )
    return value


def _bool(owner: str, name: str, value: object, default: bool | None = None) -> bool:
    if value is None and default is not None:
        return default
    if not isinstance(value, bool):
        raise ConfigurationTypeError(
            texts.ARGUMENT_TYPE.format(
                owner=owner, name=name, expected="bool", type=type(value).__name__
            )
        )
    return value


def _count(owner: str, name: str, value: object, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationTypeError(
            texts.ARGUMENT_TYPE.format(
                owner=owner, name=name, expected="int", type=type(value).__name__
            )
        )
    if value < 0:
        raise ConfigurationOverflowError(
            texts.SCHEDULE_ARGUMENT_NEGATIVE.format(owner=owner, name=name)
        )
    # Beyond a signed 64-bit LIMIT the database refuses; "no limit" is meant.
    return min(value, 2**63 - 1)


def _page(owner: str, limit: object, offset: object) -> tuple[int, int]:
    return (
        _count(owner, "limit", limit, DEFAULT_LIMIT),
        _count(owner, "offset", offset, 0),
    )


class _Calls:
    """Argument checks shared by both runners; each returns the checked arguments."""

    @staticmethod
    def register(workflow_name: object, expr: object, tz: object) -> tuple[Any, ...]:
        owner = "register_cron_workflow()"
        return (
            _str(owner, "workflow_name", workflow_name),
            _str(owner, "cron_expression", expr),
            _str(owner, "timezone", tz),
        )

    @staticmethod
    def listing(
        owner: str, enabled_only: object, limit: object, offset: object
    ) -> tuple[Any, ...]:
        return (
            _bool(owner, "enabled_only", enabled_only, default=False),
            *_page(owner, limit, offset),
        )


class CronTriggerMethods:
    """Blocking cron and trigger management methods of ``DefaultRunner``."""

    if TYPE_CHECKING:
        _runtime: Runtime

        def _call(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T: ...

    def _schedules(self) -> Schedules:
        schedules = self._runtime.schedules
        assert schedules is not None, "the runtime starts its schedules on entry"
        return schedules

    # -- cron (API.md 3.9.4) ---------------------------------------------------

    def register_cron_workflow(
        self, workflow_name: str, cron_expression: str, timezone: str
    ) -> str:
        """Schedule ``workflow_name`` on a cron expression in an IANA zone.

        Creates an enabled schedule (catch-up policy ``"skip"``) whose first run is
        the first occurrence strictly after now; the workflow need not be
        registered yet.

        Returns:
            The schedule id (a UUID string).

        Raises:
            ValueError: An invalid expression or timezone (``Invalid cron
                expression or timezone``), or cron scheduling is disabled.
        """
        args = _Calls.register(workflow_name, cron_expression, timezone)
        return self._call(self._schedules().register_cron_workflow, *args)

    def list_cron_schedules(
        self,
        enabled_only: bool | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[dict[str, Any]]:
        """Schedules ordered by workflow name (defaults ``False``, ``100``, ``0``)."""
        args = _Calls.listing("list_cron_schedules()", enabled_only, limit, offset)
        return self._call(self._schedules().list_cron_schedules, *args)

    def get_cron_schedule(self, schedule_id: str) -> dict[str, Any]:
        """One schedule; an unknown or malformed id raises ``ValueError``."""
        ident = _str("get_cron_schedule()", "schedule_id", schedule_id)
        return self._call(self._schedules().get_cron_schedule, ident)

    def update_cron_schedule(
        self, schedule_id: str, cron_expression: str, timezone: str
    ) -> None:
        """Replace expression and timezone; the next run is recomputed from now."""
        owner = "update_cron_schedule()"
        args = (
            _str(owner, "schedule_id", schedule_id),
            _str(owner, "cron_expression", cron_expression),
            _str(owner, "timezone", timezone),
        )
        self._call(self._schedules().update_cron_schedule, *args)

    def set_cron_schedule_enabled(self, schedule_id: str, enabled: bool) -> None:
        """Enable or disable a schedule (an unknown id is a no-op)."""
        owner = "set_cron_schedule_enabled()"
        args = (
            _str(owner, "schedule_id", schedule_id),
            _bool(owner, "enabled", enabled),
        )
        self._call(self._schedules().set_cron_schedule_enabled, *args)

    def delete_cron_schedule(self, schedule_id: str) -> None:
        """Delete a schedule and its execution history (unknown id: no-op)."""
        ident = _str("delete_cron_schedule()", "schedule_id", schedule_id)
        self._call(self._schedules().delete_cron_schedule, ident)

    def get_cron_execution_history(
        self, schedule_id: str, limit: int | None = None, offset: int | None = None
    ) -> list[dict[str, Any]]:
        """Audit records of one schedule, newest ``scheduled_time`` first."""
        owner = "get_cron_execution_history()"
        ident = _str(owner, "schedule_id", schedule_id)
        page = _page(owner, limit, offset)
        return self._call(self._schedules().get_cron_execution_history, ident, *page)

    def get_cron_execution_stats(self, since: str) -> dict[str, Any]:
        """Statistics over all schedules since an RFC 3339 time with offset."""
        text = _str("get_cron_execution_stats()", "since", since)
        return self._call(self._schedules().get_cron_execution_stats, text)

    # -- triggers (API.md 3.9.5) -----------------------------------------------

    def list_trigger_schedules(
        self,
        enabled_only: bool | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[dict[str, Any]]:
        """Trigger schedules, newest first (defaults ``False``, ``100``, ``0``)."""
        args = _Calls.listing("list_trigger_schedules()", enabled_only, limit, offset)
        return self._call(self._schedules().list_trigger_schedules, *args)

    def get_trigger_schedule(self, trigger_name: str) -> dict[str, Any] | None:
        """The schedule of a trigger, or ``None`` if none of that name is known."""
        name = _str("get_trigger_schedule()", "trigger_name", trigger_name)
        return self._call(self._schedules().get_trigger_schedule, name)

    def set_trigger_enabled(self, trigger_name: str, enabled: bool) -> None:
        """Enable or disable polling of a trigger (an unknown name is a no-op)."""
        owner = "set_trigger_enabled()"
        args = (
            _str(owner, "trigger_name", trigger_name),
            _bool(owner, "enabled", enabled),
        )
        self._call(self._schedules().set_trigger_enabled, *args)

    def get_trigger_execution_history(
        self, trigger_name: str, limit: int | None = None, offset: int | None = None
    ) -> list[dict[str, Any]]:
        """Fire records of one trigger, newest first."""
        owner = "get_trigger_execution_history()"
        name = _str(owner, "trigger_name", trigger_name)
        page = _page(owner, limit, offset)
        return self._call(self._schedules().get_trigger_execution_history, name, *page)


class AsyncCronTriggerMethods:
    """Awaitable cron and trigger management methods of ``AsyncRunner``.

    Same names, arguments, results and errors as ``DefaultRunner``'s.
    """

    if TYPE_CHECKING:

        def _live(self) -> Runtime: ...

    def _schedules(self) -> Schedules:
        schedules = self._live().schedules
        assert schedules is not None, "the runtime starts its schedules on entry"
        return schedules

    async def register_cron_workflow(
        self, workflow_name: str, cron_expression: str, timezone: str
    ) -> str:
        """See ``DefaultRunner.register_cron_workflow``."""
        args = _Calls.register(workflow_name, cron_expression, timezone)
        return await self._schedules().register_cron_workflow(*args)

    async def list_cron_schedules(
        self,
        enabled_only: bool | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[dict[str, Any]]:
        """See ``DefaultRunner.list_cron_schedules``."""
        args = _Calls.listing("list_cron_schedules()", enabled_only, limit, offset)
        return await self._schedules().list_cron_schedules(*args)

    async def get_cron_schedule(self, schedule_id: str) -> dict[str, Any]:
        """See ``DefaultRunner.get_cron_schedule``."""
        ident = _str("get_cron_schedule()", "schedule_id", schedule_id)
        return await self._schedules().get_cron_schedule(ident)

    async def update_cron_schedule(
        self, schedule_id: str, cron_expression: str, timezone: str
    ) -> None:
        """See ``DefaultRunner.update_cron_schedule``."""
        owner = "update_cron_schedule()"
        await self._schedules().update_cron_schedule(
            _str(owner, "schedule_id", schedule_id),
            _str(owner, "cron_expression", cron_expression),
            _str(owner, "timezone", timezone),
        )

    async def set_cron_schedule_enabled(self, schedule_id: str, enabled: bool) -> None:
        """See ``DefaultRunner.set_cron_schedule_enabled``."""
        owner = "set_cron_schedule_enabled()"
        await self._schedules().set_cron_schedule_enabled(
            _str(owner, "schedule_id", schedule_id), _bool(owner, "enabled", enabled)
        )

    async def delete_cron_schedule(self, schedule_id: str) -> None:
        """See ``DefaultRunner.delete_cron_schedule``."""
        ident = _str("delete_cron_schedule()", "schedule_id", schedule_id)
        await self._schedules().delete_cron_schedule(ident)

    async def get_cron_execution_history(
        self, schedule_id: str, limit: int | None = None, offset: int | None = None
    ) -> list[dict[str, Any]]:
        """See ``DefaultRunner.get_cron_execution_history``."""
        owner = "get_cron_execution_history()"
        ident = _str(owner, "schedule_id", schedule_id)
        page = _page(owner, limit, offset)
        return await self._schedules().get_cron_execution_history(ident, *page)

    async def get_cron_execution_stats(self, since: str) -> dict[str, Any]:
        """See ``DefaultRunner.get_cron_execution_stats``."""
        text = _str("get_cron_execution_stats()", "since", since)
        return await self._schedules().get_cron_execution_stats(text)

    async def list_trigger_schedules(
        self,
        enabled_only: bool | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[dict[str, Any]]:
        """See ``DefaultRunner.list_trigger_schedules``."""
        args = _Calls.listing("list_trigger_schedules()", enabled_only, limit, offset)
        return await self._schedules().list_trigger_schedules(*args)

    async def get_trigger_schedule(self, trigger_name: str) -> dict[str, Any] | None:
        """See ``DefaultRunner.get_trigger_schedule``."""
        name = _str("get_trigger_schedule()", "trigger_name", trigger_name)
        return await self._schedules().get_trigger_schedule(name)

    async def set_trigger_enabled(self, trigger_name: str, enabled: bool) -> None:
        """See ``DefaultRunner.set_trigger_enabled``."""
        owner = "set_trigger_enabled()"
        await self._schedules().set_trigger_enabled(
            _str(owner, "trigger_name", trigger_name), _bool(owner, "enabled", enabled)
        )

    async def get_trigger_execution_history(
        self, trigger_name: str, limit: int | None = None, offset: int | None = None
    ) -> list[dict[str, Any]]:
        """See ``DefaultRunner.get_trigger_execution_history``."""
        owner = "get_trigger_execution_history()"
        name = _str(owner, "trigger_name", trigger_name)
        page = _page(owner, limit, offset)
        return await self._schedules().get_trigger_execution_history(name, *page)
