"""The public surface of `actors`: pinned names, no shadowing, no cloaca imports."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import actors
import actors.testing

EXPECTED = (
    "Actor",
    "ActorDeadError",
    "ActorError",
    "ActorRef",
    "ActorSystem",
    "AskTimeout",
    "Backoff",
    "ChildExited",
    "ChildInfo",
    "ChildRestarted",
    "ChildSpec",
    "ChildStartError",
    "ChildStarted",
    "Clock",
    "Crashed",
    "ErrorInfo",
    "ExitReason",
    "MailboxClosedError",
    "MailboxStatistics",
    "ManualClock",
    "Monitor",
    "Normal",
    "Restart",
    "RestartDecider",
    "RestartDecision",
    "RestartIntensity",
    "RestartPlan",
    "Shutdown",
    "ShutdownPolicy",
    "Strategy",
    "SupervisionEvent",
    "Supervisor",
    "SupervisorEscalated",
    "SupervisorEscalation",
    "SupervisorFlags",
    "SupervisorStatistics",
    "SystemClock",
    "deadline_scope",
    "plan_restart",
    "plan_shutdown",
    "should_restart",
)


def test_all_is_pinned_sorted_and_resolves() -> None:
    assert isinstance(actors.__all__, tuple)
    assert actors.__all__ == EXPECTED
    assert tuple(sorted(actors.__all__)) == actors.__all__
    for name in actors.__all__:
        assert getattr(actors, name) is not None


def test_submodules_do_not_shadow_public_names() -> None:
    exported = {name: getattr(actors, name) for name in actors.__all__}
    for info in pkgutil.iter_modules(actors.__path__):
        importlib.import_module(f"actors.{info.name}")
    for name, value in exported.items():
        assert getattr(actors, name) is value, name


def test_error_tree() -> None:
    for name in (
        "ActorDeadError",
        "MailboxClosedError",
        "AskTimeout",
        "ChildStartError",
        "SupervisorEscalation",
    ):
        assert issubclass(getattr(actors, name), actors.ActorError)
    assert issubclass(actors.ActorError, Exception)
    assert actors.ActorDeadError().args == (actors.ActorDeadError.__doc__,)


def test_importing_actors_loads_no_cloaca() -> None:
    code = (
        "import sys, actors, actors.testing\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'cloaca')\n"
        "print(repr(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_testing_reexports_manual_clock() -> None:
    assert actors.testing.ManualClock is actors.ManualClock
