"""``DefaultRunnerConfig``: the 14 runner settings of API.md 3.8, and their snapshot.

A plain ``__slots__`` class with one read/write property per field and strict checks (an
``int`` field refuses ``float`` and ``bool`` with ``TypeError``; a value outside the
field's range raises ``OverflowError``), because msgspec Structs do not validate on
construction. A runner copies the config when it is created: :func:`settings_of` returns
the immutable :class:`RunnerSettings` the runtime reads.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from cloaca import texts
from cloaca.errors import ConfigurationOverflowError, ConfigurationTypeError

__all__ = ["FIELDS", "DefaultRunnerConfig", "RunnerSettings", "settings_of"]

_U32: Final = (0, 2**32 - 1)
_U64: Final = (0, 2**64 - 1)
_I64: Final = (-(2**63), 2**63 - 1)

# name -> (default, integer range, or None for a bool field); order is the
# constructor's.
_SPEC: Final[dict[str, tuple[int | bool, tuple[int, int] | None]]] = {
    "max_concurrent_tasks": (4, _U64),
    "scheduler_poll_interval_ms": (100, _U64),
    "task_timeout_seconds": (300, _U64),
    "pipeline_timeout_seconds": (3600, _U64),
    "db_pool_size": (10, _U32),
    "enable_recovery": (True, None),
    "enable_cron_scheduling": (True, None),
    "cron_poll_interval_seconds": (30, _U64),
    "cron_max_catchup_executions": (2**64 - 1, _U64),
    "cron_enable_recovery": (True, None),
    "cron_recovery_interval_seconds": (300, _U64),
    "cron_lost_threshold_minutes": (10, _I64),
    "cron_max_recovery_age_seconds": (86400, _U64),
    "cron_max_recovery_attempts": (3, _U64),
}

FIELDS: Final = tuple(_SPEC)
"""The 14 field names in constructor order (API.md 3.8)."""


def _checked(name: str, value: object) -> int | bool:
    limits = _SPEC[name][1]
    if limits is None:
        if not isinstance(value, bool):
            raise ConfigurationTypeError(
                texts.CONFIG_FIELD_TYPE.format(
                    name=name, expected="bool", type=type(value).__name__
                )
            )
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationTypeError(
            texts.CONFIG_FIELD_TYPE.format(
                name=name, expected="int", type=type(value).__name__
            )
        )
    low, high = limits
    if not low <= value <= high:
        raise ConfigurationOverflowError(
            texts.CONFIG_FIELD_RANGE.format(name=name, low=low, high=high, value=value)
        )
    return int(value)


class RunnerSettings(msgspec.Struct, frozen=True, kw_only=True):
    """An immutable snapshot of a :class:`DefaultRunnerConfig`, read by the runtime."""

    max_concurrent_tasks: int = 4
    scheduler_poll_interval_ms: int = 100
    task_timeout_seconds: int = 300
    pipeline_timeout_seconds: int | None = 3600
    db_pool_size: int = 10
    enable_recovery: bool = True
    enable_cron_scheduling: bool = True
    cron_poll_interval_seconds: int = 30
    cron_max_catchup_executions: int = 2**64 - 1
    cron_enable_recovery: bool = True
    cron_recovery_interval_seconds: int = 300
    cron_lost_threshold_minutes: int = 10
    cron_max_recovery_age_seconds: int = 86400
    cron_max_recovery_attempts: int = 3


class DefaultRunnerConfig:
    """Runner settings (API.md 3.8). Any argument omitted or ``None`` keeps its default.

    Args:
        max_concurrent_tasks: Task attempts executing at once in the runner (default 4).
        scheduler_poll_interval_ms: Tick of the scheduling loop (default 100).
        task_timeout_seconds: Per-attempt time limit (default 300).
        pipeline_timeout_seconds: How long ``execute()`` waits (default 3600; only the
            property setter accepts ``None``, meaning no limit).
        db_pool_size: Maximum PostgreSQL connections (default 10).
        enable_recovery: Recover interrupted executions at start-up (default True).
        enable_cron_scheduling: Run the cron scheduler (default True).
        cron_poll_interval_seconds: How often due cron schedules are checked (default
            30).
        cron_max_catchup_executions: Cap on catch-up runs per check (default 2**64-1).
        cron_enable_recovery: Run lost-cron-execution recovery (default True).
        cron_recovery_interval_seconds: Interval of that recovery (default 300).
        cron_lost_threshold_minutes: Age after which a cron execution is lost (default
            10).
        cron_max_recovery_age_seconds: Lost executions older than this are abandoned
            (default 86400).
        cron_max_recovery_attempts: Recovery attempts per lost execution (default 3).

    Raises:
        TypeError: a value of the wrong type (``float`` or ``bool`` for an int field).
        OverflowError: a negative value for an unsigned field, or one too large.
    """

    __slots__ = ("_values",)

    _values: dict[str, Any]

    def __init__(
        self,
        max_concurrent_tasks: int | None = None,
        scheduler_poll_interval_ms: int | None = None,
        task_timeout_seconds: int | None = None,
        pipeline_timeout_seconds: int | None = None,
        db_pool_size: int | None = None,
        enable_recovery: bool | None = None,
        enable_cron_scheduling: bool | None = None,
        cron_poll_interval_seconds: int | None = None,
        cron_max_catchup_executions: int | None = None,
        cron_enable_recovery: bool | None = None,
        cron_recovery_interval_seconds: int | None = None,
        cron_lost_threshold_minutes: int | None = None,
        cron_max_recovery_age_seconds: int | None = None,
        cron_max_recovery_attempts: int | None = None,
    ) -> None:
        given = locals()
        self._values = {
            name: default if given[name] is None else _checked(name, given[name])
            for name, (default, _) in _SPEC.items()
        }

    def _set(self, name: str, value: object) -> None:
        if name == "pipeline_timeout_seconds" and value is None:
            # 3.8: only the setter can disable the pipeline timeout.
            self._values[name] = None
        else:
            self._values[name] = _checked(name, value)

    @staticmethod
    def default() -> DefaultRunnerConfig:
        """Return a config with every default (same as ``DefaultRunnerConfig()``)."""
        return DefaultRunnerConfig()

    @property
    def max_concurrent_tasks(self) -> int:
        """Maximum task attempts executing at once in the runner."""
        return self._values["max_concurrent_tasks"]  # type: ignore[no-any-return]

    @max_concurrent_tasks.setter
    def max_concurrent_tasks(self, value: int) -> None:
        self._set("max_concurrent_tasks", value)

    @property
    def scheduler_poll_interval_ms(self) -> int:
        """Tick of the scheduling loop, in milliseconds."""
        return self._values["scheduler_poll_interval_ms"]  # type: ignore[no-any-return]

    @scheduler_poll_interval_ms.setter
    def scheduler_poll_interval_ms(self, value: int) -> None:
        self._set("scheduler_poll_interval_ms", value)

    @property
    def task_timeout_seconds(self) -> int:
        """Per-attempt time limit in seconds."""
        return self._values["task_timeout_seconds"]  # type: ignore[no-any-return]

    @task_timeout_seconds.setter
    def task_timeout_seconds(self, value: int) -> None:
        self._set("task_timeout_seconds", value)

    @property
    def pipeline_timeout_seconds(self) -> int | None:
        """How long ``execute()`` waits, in seconds; ``None``: no limit."""
        return self._values["pipeline_timeout_seconds"]  # type: ignore[no-any-return]

    @pipeline_timeout_seconds.setter
    def pipeline_timeout_seconds(self, value: int | None) -> None:
        self._set("pipeline_timeout_seconds", value)

    @property
    def db_pool_size(self) -> int:
        """Maximum PostgreSQL connections."""
        return self._values["db_pool_size"]  # type: ignore[no-any-return]

    @db_pool_size.setter
    def db_pool_size(self, value: int) -> None:
        self._set("db_pool_size", value)

    @property
    def enable_recovery(self) -> bool:
        """Whether interrupted executions are recovered at start-up."""
        return self._values["enable_recovery"]  # type: ignore[no-any-return]

    @enable_recovery.setter
    def enable_recovery(self, value: bool) -> None:
        self._set("enable_recovery", value)

    @property
    def enable_cron_scheduling(self) -> bool:
        """Whether the cron scheduler runs."""
        return self._values["enable_cron_scheduling"]  # type: ignore[no-any-return]

    @enable_cron_scheduling.setter
    def enable_cron_scheduling(self, value: bool) -> None:
        self._set("enable_cron_scheduling", value)

    @property
    def cron_poll_interval_seconds(self) -> int:
        """How often due cron schedules are checked, in seconds."""
        return self._values["cron_poll_interval_seconds"]  # type: ignore[no-any-return]

    @cron_poll_interval_seconds.setter
    def cron_poll_interval_seconds(self, value: int) -> None:
        self._set("cron_poll_interval_seconds", value)

    @property
    def cron_max_catchup_executions(self) -> int:
        """Cap on catch-up runs per check."""
        return self._values["cron_max_catchup_executions"]  # type: ignore[no-any-return]

    @cron_max_catchup_executions.setter
    def cron_max_catchup_executions(self, value: int) -> None:
        self._set("cron_max_catchup_executions", value)

    @property
    def cron_enable_recovery(self) -> bool:
        """Whether lost cron executions are recovered."""
        return self._values["cron_enable_recovery"]  # type: ignore[no-any-return]

    @cron_enable_recovery.setter
    def cron_enable_recovery(self, value: bool) -> None:
        self._set("cron_enable_recovery", value)

    @property
    def cron_recovery_interval_seconds(self) -> int:
        """Interval of lost-cron-execution recovery, in seconds."""
        return self._values["cron_recovery_interval_seconds"]  # type: ignore[no-any-return]

    @cron_recovery_interval_seconds.setter
    def cron_recovery_interval_seconds(self, value: int) -> None:
        self._set("cron_recovery_interval_seconds", value)

    @property
    def cron_lost_threshold_minutes(self) -> int:
        """Age in minutes after which a cron execution is lost."""
        return self._values["cron_lost_threshold_minutes"]  # type: ignore[no-any-return]

    @cron_lost_threshold_minutes.setter
    def cron_lost_threshold_minutes(self, value: int) -> None:
        self._set("cron_lost_threshold_minutes", value)

    @property
    def cron_max_recovery_age_seconds(self) -> int:
        """Lost cron executions older than this are abandoned."""
        return self._values["cron_max_recovery_age_seconds"]  # type: ignore[no-any-return]

    @cron_max_recovery_age_seconds.setter
    def cron_max_recovery_age_seconds(self, value: int) -> None:
        self._set("cron_max_recovery_age_seconds", value)

    @property
    def cron_max_recovery_attempts(self) -> int:
        """Recovery attempts per lost cron execution."""
        return self._values["cron_max_recovery_attempts"]  # type: ignore[no-any-return]

    @cron_max_recovery_attempts.setter
    def cron_max_recovery_attempts(self, value: int) -> None:
        self._set("cron_max_recovery_attempts", value)

    def to_dict(self) -> dict[str, Any]:
        """Return the 14 fields and their current values."""
        return dict(self._values)

    def __repr__(self) -> str:
        v = self._values
        cron = "true" if v["enable_cron_scheduling"] else "false"
        return (
            f"DefaultRunnerConfig(max_concurrent_tasks={v['max_concurrent_tasks']}, "
            f"enable_cron_scheduling={cron}, db_pool_size={v['db_pool_size']})"
        )


def settings_of(config: DefaultRunnerConfig) -> RunnerSettings:
    """Snapshot ``config``: later changes to it do not affect the returned settings."""
    return RunnerSettings(**config._values)
