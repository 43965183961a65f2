"""DefaultRunnerConfig (API.md 3.8) and its RunnerSettings snapshot."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import cloaca
from cloaca import DefaultRunnerConfig
from cloaca.config import RunnerSettings, settings_of

DEFAULTS = {
    "max_concurrent_tasks": 4,
    "scheduler_poll_interval_ms": 100,
    "task_timeout_seconds": 300,
    "pipeline_timeout_seconds": 3600,
    "db_pool_size": 10,
    "enable_recovery": True,
    "enable_cron_scheduling": True,
    "cron_poll_interval_seconds": 30,
    "cron_max_catchup_executions": 18446744073709551615,
    "cron_enable_recovery": True,
    "cron_recovery_interval_seconds": 300,
    "cron_lost_threshold_minutes": 10,
    "cron_max_recovery_age_seconds": 86400,
    "cron_max_recovery_attempts": 3,
}


def kw(name: str, value: object) -> dict[str, Any]:
    return {name: value}


BOOLS = {"enable_recovery", "enable_cron_scheduling", "cron_enable_recovery"}


def test_defaults_and_to_dict() -> None:
    cfg = DefaultRunnerConfig()
    assert cfg.to_dict() == DEFAULTS
    assert list(cfg.to_dict()) == list(DEFAULTS)
    for name, value in DEFAULTS.items():
        assert getattr(cfg, name) == value
    assert DefaultRunnerConfig.default().to_dict() == DEFAULTS


def test_constructor_parameter_order() -> None:
    params = list(inspect.signature(DefaultRunnerConfig).parameters)
    assert params == list(DEFAULTS)
    cfg = DefaultRunnerConfig(8, 50)
    assert cfg.max_concurrent_tasks == 8
    assert cfg.scheduler_poll_interval_ms == 50


def test_none_keeps_default_and_unknown_keyword_is_type_error() -> None:
    cfg = DefaultRunnerConfig(max_concurrent_tasks=None, pipeline_timeout_seconds=None)
    assert cfg.max_concurrent_tasks == 4
    assert cfg.pipeline_timeout_seconds == 3600
    with pytest.raises(TypeError):
        DefaultRunnerConfig(max_concurrent_workflows=2)  # type: ignore[call-arg]


@pytest.mark.parametrize("name", [n for n in DEFAULTS if n not in BOOLS])
def test_int_fields_reject_float_and_bool(name: str) -> None:
    for bad in (1.0, True, "1"):
        with pytest.raises(TypeError) as info:
            DefaultRunnerConfig(**kw(name, bad))
        assert isinstance(info.value, cloaca.ConfigurationError)
        with pytest.raises(TypeError):
            setattr(DefaultRunnerConfig(), name, bad)


@pytest.mark.parametrize("name", sorted(BOOLS))
def test_bool_fields_reject_int(name: str) -> None:
    with pytest.raises(TypeError):
        DefaultRunnerConfig(**kw(name, 1))


@pytest.mark.parametrize(
    "name",
    [n for n in DEFAULTS if n not in BOOLS and n != "cron_lost_threshold_minutes"],
)
def test_unsigned_fields_reject_negative_with_overflow_error(name: str) -> None:
    with pytest.raises(OverflowError) as info:
        DefaultRunnerConfig(**kw(name, -1))
    assert isinstance(info.value, cloaca.ConfigurationError)
    cfg = DefaultRunnerConfig()
    with pytest.raises(OverflowError):
        setattr(cfg, name, -1)
    assert getattr(cfg, name) == DEFAULTS[name]


def test_signed_and_upper_limits() -> None:
    assert (
        DefaultRunnerConfig(cron_lost_threshold_minutes=-5).cron_lost_threshold_minutes
        == -5
    )
    big = DefaultRunnerConfig(cron_max_catchup_executions=2**64 - 1)
    assert big.cron_max_catchup_executions == 2**64 - 1
    with pytest.raises(OverflowError):
        DefaultRunnerConfig(cron_max_catchup_executions=2**64)
    with pytest.raises(OverflowError):
        DefaultRunnerConfig(db_pool_size=2**32)


def test_properties_are_read_write() -> None:
    cfg = DefaultRunnerConfig()
    cfg.max_concurrent_tasks = 16
    cfg.enable_cron_scheduling = False
    assert cfg.to_dict()["max_concurrent_tasks"] == 16
    assert cfg.enable_cron_scheduling is False
    cfg.pipeline_timeout_seconds = None
    assert cfg.pipeline_timeout_seconds is None
    with pytest.raises(TypeError):
        cfg.max_concurrent_tasks = None  # type: ignore[assignment]


def test_repr() -> None:
    assert repr(DefaultRunnerConfig()) == (
        "DefaultRunnerConfig(max_concurrent_tasks=4, enable_cron_scheduling=true, "
        "db_pool_size=10)"
    )
    cfg = DefaultRunnerConfig(max_concurrent_tasks=2, enable_cron_scheduling=False)
    assert repr(cfg) == (
        "DefaultRunnerConfig(max_concurrent_tasks=2, enable_cron_scheduling=false, "
        "db_pool_size=10)"
    )


def test_settings_snapshot_is_independent() -> None:
    cfg = DefaultRunnerConfig(max_concurrent_tasks=2)
    cfg.pipeline_timeout_seconds = None
    settings = settings_of(cfg)
    cfg.max_concurrent_tasks = 9
    assert isinstance(settings, RunnerSettings)
    assert settings.max_concurrent_tasks == 2
    assert settings.pipeline_timeout_seconds is None
    expected: dict[str, Any] = dict(DEFAULTS, max_concurrent_tasks=2)
    expected["pipeline_timeout_seconds"] = None
    assert {n: getattr(settings, n) for n in DEFAULTS} == expected
    with pytest.raises(AttributeError):
        settings.max_concurrent_tasks = 3  # type: ignore[misc]
