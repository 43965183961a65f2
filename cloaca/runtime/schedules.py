"""Cron and trigger services of one runtime, and the runtime side of their methods.

``start_schedules`` is called by ``Runtime.__aenter__`` once the core actors run:
it starts the ``cron`` actor (when ``enable_cron_scheduling``) and the
``triggers`` actor as children of the root, after the core actors in its
rest_for_one order, and returns the ``Schedules`` object that the public facades
(``cloaca.schedules``) call on the runtime's loop. Its methods implement API.md
3.9.4-3.9.5 on the store (each store call is one transaction), return the
dictionaries of the API with timestamps exactly as stored, wake the actors when a
schedule changes, and raise the API's ``ValueError`` subclasses with each
method's prefix.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, cast

import anyio

from actors import ActorError, ChildSpec, ShutdownPolicy
from cloaca import texts
from cloaca.cron import CronError, CronSchedule
from cloaca.errors import ConfigurationValueError, DatabaseValueError
from cloaca.runtime.cron_actor import CronScheduler, ServiceStatistics, Wake
from cloaca.runtime.trigger_actor import TriggerPoller
from cloaca.storage.errors import StorageError
from cloaca.storage.protocol import (
    CronExecutionRow,
    CronScheduleRow,
    ScheduleStore,
    TriggerExecutionRow,
    TriggerScheduleRow,
)

if TYPE_CHECKING:
    from actors import ActorSystem
    from cloaca.config import RunnerSettings
    from cloaca.runtime.engine import Runtime

__all__ = ("Schedules", "start_schedules")

_RFC3339: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})"
)
REGISTRATION_WAIT: Final = 5.0
"""Seconds a trigger method waits for rows of triggers registered just before."""
STOP_GRACE: Final = 5.0
"""Seconds a service may take to finish its current message at shutdown."""


def _failure(template: str, reason: object) -> ConfigurationValueError:
    return ConfigurationValueError(template.format(reason=reason))


def _schedule_dict(row: CronScheduleRow) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "workflow_name": row.workflow_name,
        "cron_expression": row.cron_expression,
        "timezone": row.timezone,
        "enabled": row.enabled,
        "catchup_policy": row.catchup_policy,
        "next_run_at": row.next_run_at,
        "last_run_at": row.last_run_at,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def _cron_execution_dict(row: CronExecutionRow) -> dict[str, Any]:
    linked = row.pipeline_execution_id
    return {
        "id": str(row.id),
        "schedule_id": str(row.schedule_id),
        "scheduled_time": row.scheduled_time,
        "claimed_at": row.claimed_at,
        "pipeline_execution_id": None if linked is None else str(linked),
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def _trigger_dict(row: TriggerScheduleRow) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "trigger_name": row.trigger_name,
        "workflow_name": row.workflow_name,
        "poll_interval_ms": row.poll_interval_ms,
        "allow_concurrent": row.allow_concurrent,
        "enabled": row.enabled,
        "last_poll_at": row.last_poll_at,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def _fire_dict(row: TriggerExecutionRow) -> dict[str, Any]:
    linked = row.pipeline_execution_id
    return {
        "id": str(row.id),
        "trigger_name": row.trigger_name,
        "context_hash": row.context_hash,
        "pipeline_execution_id": None if linked is None else str(linked),
        "started_at": row.started_at,
        "completed_at": row.completed_at,
        "created_at": row.created_at,
    }


class Schedules:
    """The runtime side of the cron and trigger methods (see the module docstring).

    Attributes:
        cron_stats: Counters of the cron service (tests wait on them).
        trigger_stats: Counters of the trigger service.
    """

    def __init__(self, runtime: Runtime, system: ActorSystem) -> None:
        self._settings = runtime.settings
        self._store = cast(ScheduleStore, runtime.store)
        self._system: ActorSystem | None = system
        self.cron_stats = ServiceStatistics()
        self.trigger_stats = ServiceStatistics()
        self.recovery_attempts: dict[uuid.UUID, int] = {}

    @classmethod
    def offline(cls, store: ScheduleStore, settings: RunnerSettings) -> Schedules:
        """The management methods on a bare store, with no runtime running.

        For the ``cloaca cron`` command: it manages schedules that a running
        ``cloaca run`` fires, without starting a cron service of its own (which
        would claim due ticks for workflows this process has not loaded).
        """
        schedules = cls.__new__(cls)
        schedules._settings = settings
        schedules._store = store
        schedules._system = None
        schedules.cron_stats = ServiceStatistics()
        schedules.trigger_stats = ServiceStatistics()
        schedules.recovery_attempts = {}
        return schedules

    @property
    def cron_enabled(self) -> bool:
        """Whether this runner runs the cron service."""
        return self._settings.enable_cron_scheduling

    def now(self) -> datetime:
        """The runtime clock's wall time, aware UTC."""
        if self._system is None:
            return datetime.now(UTC)
        return datetime.fromtimestamp(self._system.clock.wall_ms() / 1000, UTC)

    def _wake(self, actor: str) -> None:
        if self._system is None:
            return
        # Shutting down (no such child, or it stopped): nothing left to wake.
        with contextlib.suppress(KeyError, ActorError):
            self._system.root.ref_of(actor).send_nowait(Wake())

    # -- helpers ---------------------------------------------------------------

    def _require_cron(self, template: str) -> None:
        if not self.cron_enabled:
            raise _failure(template, texts.CRON_NOT_ENABLED)

    @staticmethod
    def _parse_id(value: str, template: str) -> uuid.UUID:
        try:
            return uuid.UUID(value)
        except ValueError:
            raise _failure(
                template, texts.INVALID_SCHEDULE_ID.format(value=value)
            ) from None

    @staticmethod
    def _cron(expression: str, timezone: str, template: str) -> CronSchedule:
        try:
            return CronSchedule(expression, timezone)
        except CronError as exc:
            raise _failure(template, texts.INVALID_CRON.format(reason=exc)) from exc

    def _next_run(self, schedule: CronSchedule, template: str) -> datetime:
        try:
            return schedule.next_after(self.now())
        except CronError as exc:
            raise _failure(template, texts.INVALID_CRON.format(reason=exc)) from exc

    @staticmethod
    def _storage(template: str, exc: StorageError) -> DatabaseValueError:
        return DatabaseValueError(template.format(reason=exc))

    # -- cron (API.md 3.9.4) ---------------------------------------------------

    async def register_cron_workflow(
        self, workflow_name: str, cron_expression: str, timezone: str
    ) -> str:
        """Create an enabled ``skip`` schedule; return its id."""
        template = texts.CRON_REGISTER_FAILED
        self._require_cron(template)
        schedule = self._cron(cron_expression, timezone, template)
        schedule_id = uuid.uuid4()
        try:
            await self._store.insert_cron_schedule(
                schedule_id=schedule_id,
                workflow_name=workflow_name,
                cron_expression=cron_expression,
                timezone=timezone,
                next_run_at=self._next_run(schedule, template),
                now=self.now(),
            )
        except StorageError as exc:
            raise self._storage(template, exc) from exc
        self._wake("cron")
        return str(schedule_id)

    async def list_cron_schedules(
        self, enabled_only: bool, limit: int, offset: int
    ) -> list[dict[str, Any]]:
        """Schedules by workflow name."""
        template = texts.CRON_LIST_FAILED
        self._require_cron(template)
        try:
            rows = await self._store.list_cron_schedules(
                enabled_only=enabled_only, limit=limit, offset=offset
            )
        except StorageError as exc:
            raise self._storage(template, exc) from exc
        return [_schedule_dict(row) for row in rows]

    async def get_cron_schedule(self, schedule_id: str) -> dict[str, Any]:
        """One schedule; an unknown id is a ``ValueError``."""
        template = texts.CRON_GET_FAILED
        self._require_cron(template)
        ident = self._parse_id(schedule_id, template)
        try:
            row = await self._store.get_cron_schedule(ident)
        except StorageError as exc:
            raise self._storage(template, exc) from exc
        if row is None:
            raise _failure(
                template, texts.CRON_SCHEDULE_NOT_FOUND.format(value=schedule_id)
            )
        return _schedule_dict(row)

    async def update_cron_schedule(
        self, schedule_id: str, cron_expression: str, timezone: str
    ) -> None:
        """Replace expression and zone; recompute the next run from now."""
        template = texts.CRON_UPDATE_FAILED
        self._require_cron(template)
        ident = self._parse_id(schedule_id, template)
        schedule = self._cron(cron_expression, timezone, template)
        try:
            found = await self._store.update_cron_schedule(
                ident,
                cron_expression=cron_expression,
                timezone=timezone,
                next_run_at=self._next_run(schedule, template),
                now=self.now(),
            )
        except StorageError as exc:
            raise self._storage(template, exc) from exc
        if not found:
            raise _failure(
                template, texts.CRON_SCHEDULE_NOT_FOUND.format(value=schedule_id)
            )
        self._wake("cron")

    async def set_cron_schedule_enabled(self, schedule_id: str, enabled: bool) -> None:
        """Enable or disable; an unknown id is a no-op."""
        template = texts.CRON_UPDATE_FAILED
        self._require_cron(template)
        ident = self._parse_id(schedule_id, template)
        try:
            await self._store.set_cron_schedule_enabled(ident, enabled, self.now())
        except StorageError as exc:
            raise self._storage(template, exc) from exc
        self._wake("cron")

    async def delete_cron_schedule(self, schedule_id: str) -> None:
        """Delete a schedule and its history; an unknown id is a no-op."""
        template = texts.CRON_DELETE_FAILED
        self._require_cron(template)
        ident = self._parse_id(schedule_id, template)
        try:
            await self._store.delete_cron_schedule(ident)
        except StorageError as exc:
            raise self._storage(template, exc) from exc

    async def get_cron_execution_history(
        self, schedule_id: str, limit: int, offset: int
    ) -> list[dict[str, Any]]:
        """Audit rows of one schedule, newest tick first."""
        template = texts.CRON_HISTORY_FAILED
        self._require_cron(template)
        ident = self._parse_id(schedule_id, template)
        try:
            rows = await self._store.list_cron_executions(
                ident, limit=limit, offset=offset
            )
        except StorageError as exc:
            raise self._storage(template, exc) from exc
        return [_cron_execution_dict(row) for row in rows]

    async def get_cron_execution_stats(self, since: str) -> dict[str, Any]:
        """Statistics over every audit row claimed at or after ``since``."""
        template = texts.CRON_STATS_FAILED
        self._require_cron(template)
        if _RFC3339.fullmatch(since) is None:
            raise ConfigurationValueError(texts.INVALID_DATETIME.format(value=since))
        try:
            start = datetime.fromisoformat(since).astimezone(UTC)
        except ValueError:
            raise ConfigurationValueError(
                texts.INVALID_DATETIME.format(value=since)
            ) from None
        threshold = timedelta(minutes=self._settings.cron_lost_threshold_minutes)
        try:
            stats = await self._store.cron_execution_stats(
                start, self.now() - threshold
            )
        except StorageError as exc:
            raise self._storage(template, exc) from exc
        rate = 100.0 * stats.linked / stats.total if stats.total else 0.0
        return {
            "total_executions": stats.total,
            "successful_executions": stats.linked,
            "lost_executions": stats.lost,
            "success_rate": rate,
        }

    # -- triggers (API.md 3.9.5) -----------------------------------------------

    async def _registered(self) -> None:
        """Wait until triggers registered before this call have their rows."""
        stats = self.trigger_stats
        # Bounded: a trigger service that is restarting must not hang a listing.
        with anyio.move_on_after(REGISTRATION_WAIT):
            await stats.wait_for(lambda: stats.upserted >= stats.requested)

    async def list_trigger_schedules(
        self, enabled_only: bool, limit: int, offset: int
    ) -> list[dict[str, Any]]:
        """Trigger schedules, newest first."""
        await self._registered()
        try:
            rows = await self._store.list_trigger_schedules(
                enabled_only=enabled_only, limit=limit, offset=offset
            )
        except StorageError as exc:
            raise self._storage(texts.TRIGGER_LIST_FAILED, exc) from exc
        return [_trigger_dict(row) for row in rows]

    async def get_trigger_schedule(self, trigger_name: str) -> dict[str, Any] | None:
        """One trigger schedule, or None."""
        await self._registered()
        try:
            row = await self._store.get_trigger_schedule(trigger_name)
        except StorageError as exc:
            raise self._storage(texts.TRIGGER_GET_FAILED, exc) from exc
        return None if row is None else _trigger_dict(row)

    async def set_trigger_enabled(self, trigger_name: str, enabled: bool) -> None:
        """Enable or disable polling; an unknown name is a no-op."""
        await self._registered()
        try:
            await self._store.set_trigger_enabled(trigger_name, enabled, self.now())
        except StorageError as exc:
            raise self._storage(texts.TRIGGER_UPDATE_FAILED, exc) from exc
        self._wake("triggers")

    async def get_trigger_execution_history(
        self, trigger_name: str, limit: int, offset: int
    ) -> list[dict[str, Any]]:
        """Fire records of one trigger, newest first."""
        await self._registered()
        try:
            rows = await self._store.list_trigger_executions(
                trigger_name, limit=limit, offset=offset
            )
        except StorageError as exc:
            raise self._storage(texts.TRIGGER_HISTORY_FAILED, exc) from exc
        return [_fire_dict(row) for row in rows]


async def start_schedules(runtime: Runtime, system: ActorSystem) -> Schedules:
    """Start the cron and trigger services of ``runtime``; return its ``Schedules``."""
    schedules = Schedules(runtime, system)
    store = schedules._store
    settings = runtime.settings
    root = system.root

    def scheduler() -> Any:
        return root.ref_of("scheduler")

    def persistence() -> Any:
        return root.ref_of("persistence")

    if settings.enable_cron_scheduling:
        await system.spawn(
            ChildSpec(
                id="cron",
                factory=lambda: CronScheduler(
                    store,
                    settings,
                    scheduler,
                    persistence,
                    schedules.cron_stats,
                    schedules.recovery_attempts,
                ),
                shutdown=ShutdownPolicy.timeout(STOP_GRACE),
            )
        )
    await system.spawn(
        ChildSpec(
            id="triggers",
            factory=lambda: TriggerPoller(
                store,
                scheduler,
                persistence,
                runtime.add_finish_listener,
                schedules.trigger_stats,
            ),
            shutdown=ShutdownPolicy.timeout(STOP_GRACE),
        )
    )
    return schedules
