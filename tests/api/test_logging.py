"""Runtime log events: stable names and keys, and no global configuration by cloaca."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from structlog.testing import LogCapture

import cloaca


@pytest.fixture
def captured() -> Iterator[LogCapture]:
    capture = LogCapture()
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, capture],
        wrapper_class=structlog.make_filtering_bound_logger(0),
    )
    try:
        yield capture
    finally:
        structlog.reset_defaults()


def test_each_attempt_logs_one_event_with_the_stable_keys(
    captured: LogCapture, tmp_path: Path
) -> None:
    with cloaca.WorkflowBuilder("logged"):

        @cloaca.task(id="flaky", retry_attempts=2, retry_delay_ms=1)
        def flaky(ctx: cloaca.Context) -> cloaca.Context:
            if not ctx.get("second"):
                raise ValueError("first attempt fails")
            return ctx

    with cloaca.DefaultRunner("sqlite://" + str(tmp_path / "log.db")) as runner:
        result = runner.execute("logged", cloaca.Context())
    events = [e for e in captured.entries if e["event"] == "task.attempt.finished"]
    assert len(events) == 2
    for attempt, event in enumerate(events, start=1):
        assert event["execution_id"] == result.execution_id
        assert event["task"] == "public::embedded::logged::flaky"
        assert event["attempt"] == attempt
        assert event["outcome"] == "failed"
    assert result.status == "Failed"


def test_cloaca_never_configures_structlog(tmp_path: Path) -> None:
    structlog.reset_defaults()
    with cloaca.WorkflowBuilder("quiet"):

        @cloaca.task(id="only")
        def only(ctx: cloaca.Context) -> cloaca.Context:
            return ctx

    with cloaca.DefaultRunner("sqlite://" + str(tmp_path / "quiet.db")) as runner:
        runner.execute("quiet", cloaca.Context())
    assert not structlog.is_configured()
