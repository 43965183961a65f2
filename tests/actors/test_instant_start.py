"""``Actor.instant_start``: children started without waiting for their ``on_start``."""

from __future__ import annotations

from typing import Any, ClassVar

import anyio
import pytest

from actors import (
    Actor,
    ActorSystem,
    ChildExited,
    ChildRestarted,
    ChildSpec,
    ChildStarted,
    Crashed,
    ExitReason,
    Normal,
    Restart,
    Shutdown,
    ShutdownPolicy,
    Supervisor,
)
from actors.testing import Recorder

pytestmark = pytest.mark.anyio

SUP = "root/sup"


class Instant(Actor[Any]):
    """An instant-start child: ``on_start`` waits for ``gate`` (when given)."""

    instant_start: ClassVar[bool] = True

    def __init__(
        self,
        log: list[str],
        gate: anyio.Event | None = None,
        fail_on_start: bool = False,
    ) -> None:
        self._log = log
        self._gate = gate
        self._fail = fail_on_start

    async def on_start(self) -> None:
        self._log.append(f"start {self.incarnation}")
        if self._gate is not None:
            await self._gate.wait()
        if self._fail:
            raise RuntimeError(f"on_start failed in incarnation {self.incarnation}")
        self._log.append(f"started {self.incarnation}")

    async def handle(self, message: Any) -> Any:
        self._log.append(f"got {message}")
        if message == "exit":
            self.stop("done")
        return message

    async def on_stop(self, reason: ExitReason) -> None:
        self._log.append(f"stop {type(reason).__name__}")


async def start_sup(system: ActorSystem) -> Supervisor:
    sup = Supervisor()
    await system.spawn(
        ChildSpec("sup", lambda: sup, Restart.TEMPORARY, ShutdownPolicy.infinity())
    )
    return sup


def child_events(recorder: Recorder, kind: type[Any]) -> list[Any]:
    return [e for e in recorder.of_type(kind) if e.supervisor == SUP]


async def test_start_child_returns_before_on_start_finished(
    recorder: Recorder,
) -> None:
    log: list[str] = []
    gate = anyio.Event()
    async with ActorSystem(monitor=recorder) as system:
        sup = await start_sup(system)
        ref = await sup.start_child(
            ChildSpec("job", lambda: Instant(log, gate), Restart.TRANSIENT)
        )
        # Announced at once, although on_start is still waiting for the gate.
        assert [e.child_id for e in child_events(recorder, ChildStarted)] == ["job"]
        assert "started 1" not in log
        # Messages sent meanwhile wait in the mailbox for the receive loop.
        ref.send_nowait("hello")
        gate.set()
        assert await ref.ask("ping") == "ping"
        assert log == ["start 1", "started 1", "got hello", "got ping"]


async def test_nowait_children_are_announced_in_request_order(
    recorder: Recorder,
) -> None:
    log: list[str] = []
    async with ActorSystem(monitor=recorder) as system:
        sup = await start_sup(system)
        for name in ("a", "b", "c", "d"):
            sup.start_child_nowait(
                ChildSpec(name, lambda: Instant(log), Restart.TRANSIENT)
            )
        await recorder.wait_for(
            lambda e: isinstance(e, ChildStarted) and e.child_id == "d"
        )
        started = [e.child_id for e in child_events(recorder, ChildStarted)]
        assert started == ["a", "b", "c", "d"]
        assert [i.id for i in sup.which_children()] == ["a", "b", "c", "d"]
        for info in sup.which_children():
            assert await info.ref.ask("ping") == "ping"


async def test_a_normal_exit_removes_the_transient_child(recorder: Recorder) -> None:
    log: list[str] = []
    async with ActorSystem(monitor=recorder) as system:
        sup = await start_sup(system)
        sup.start_child_nowait(
            ChildSpec("job", lambda: Instant(log), Restart.TRANSIENT)
        )
        await recorder.wait_for(
            lambda e: isinstance(e, ChildStarted) and e.supervisor == SUP
        )
        sup.ref_of("job").send_nowait("exit")
        event = await recorder.wait_for(
            lambda e: isinstance(e, ChildExited) and e.child_id == "job"
        )
        assert isinstance(event, ChildExited)
        assert event.reason == Normal("done")
        assert not event.during_start
        with anyio.fail_after(5):
            await anyio.wait_all_tasks_blocked()
        assert sup.which_children() == []
        assert log == ["start 1", "started 1", "got exit", "stop Normal"]


async def test_a_failing_on_start_is_a_crash_handled_by_the_restart_policy(
    recorder: Recorder,
) -> None:
    log: list[str] = []
    incarnations = iter([True, False])
    async with ActorSystem(monitor=recorder) as system:
        sup = await start_sup(system)
        ref = await sup.start_child(
            ChildSpec(
                "job",
                lambda: Instant(log, fail_on_start=next(incarnations)),
                Restart.PERMANENT,
            )
        )
        crashed = await recorder.wait_for(
            lambda e: isinstance(e, ChildExited) and e.child_id == "job"
        )
        assert isinstance(crashed, ChildExited)
        assert isinstance(crashed.reason, Crashed)
        assert "on_start failed in incarnation 1" in crashed.reason.error.message
        assert not crashed.during_start
        await recorder.wait_for(
            lambda e: isinstance(e, ChildRestarted) and e.child_id == "job"
        )
        # The restart is the next incarnation, reached through the same ref.
        assert await ref.ask("ping") == "ping"
        # on_stop is not called for an incarnation whose on_start failed.
        assert log == ["start 1", "start 2", "started 2", "got ping"]
        started = [e.incarnation for e in child_events(recorder, ChildStarted)]
        assert started == [1, 2]


async def test_terminating_a_child_still_in_on_start(recorder: Recorder) -> None:
    log: list[str] = []
    gate = anyio.Event()  # never set: on_start waits until cancelled
    async with ActorSystem(monitor=recorder) as system:
        sup = await start_sup(system)
        await sup.start_child(
            ChildSpec(
                "job",
                lambda: Instant(log, gate),
                Restart.PERMANENT,
                ShutdownPolicy.brutal(),
            )
        )
        with anyio.fail_after(5):
            await anyio.wait_all_tasks_blocked()
        with anyio.fail_after(5):
            await sup.terminate_child("job")
        exited = child_events(recorder, ChildExited)
        assert [(e.child_id, e.reason) for e in exited] == [("job", Shutdown())]
        assert sup.which_children() == []
        assert log == ["start 1"]


async def test_shutdown_stops_instant_children(recorder: Recorder) -> None:
    log: list[str] = []
    async with ActorSystem(monitor=recorder) as system:
        sup = await start_sup(system)
        ref = await sup.start_child(
            ChildSpec("job", lambda: Instant(log), Restart.PERMANENT)
        )
        assert await ref.ask("ping") == "ping"
    assert log == ["start 1", "started 1", "got ping", "stop Shutdown"]
    exited = child_events(recorder, ChildExited)
    assert [(e.child_id, type(e.reason)) for e in exited] == [("job", Shutdown)]


async def test_a_supervisor_killed_takes_its_instant_children_along(
    recorder: Recorder,
) -> None:
    log: list[str] = []
    async with ActorSystem(monitor=recorder) as system:
        sup = Supervisor()
        await system.spawn(
            ChildSpec("sup", lambda: sup, Restart.TEMPORARY, ShutdownPolicy.brutal())
        )
        ref = await sup.start_child(
            ChildSpec("job", lambda: Instant(log), Restart.PERMANENT)
        )
        assert await ref.ask("ping") == "ping"
        recorder.clear()
        with anyio.fail_after(5):
            await system.root.terminate_child("sup")
        # Cancelled with its supervisor: on_stop ran, no exit of its own reported.
        assert log == ["start 1", "started 1", "got ping", "stop Shutdown"]
        assert child_events(recorder, ChildExited) == []
        assert not ref.is_alive
