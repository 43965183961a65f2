"""``Supervisor.start_child_nowait``: fire-and-forget starts of one-shot children."""

from __future__ import annotations

import anyio
import pytest

from actors import (
    ActorDeadError,
    ActorSystem,
    ChildExited,
    ChildSpec,
    ChildStarted,
    Restart,
    ShutdownPolicy,
    Supervisor,
)
from actors.testing import Recorder, ScriptedChild

pytestmark = pytest.mark.anyio

SUP = "root/sup"


async def start_sup(system: ActorSystem) -> Supervisor:
    sup = Supervisor()
    await system.spawn(
        ChildSpec("sup", lambda: sup, Restart.TEMPORARY, ShutdownPolicy.infinity())
    )
    return sup


async def test_children_start_in_request_order(recorder: Recorder) -> None:
    async with ActorSystem(monitor=recorder) as system:
        sup = await start_sup(system)
        recorder.clear()
        for name in ("a", "b", "c"):
            sup.start_child_nowait(ChildSpec(name, ScriptedChild(), Restart.TRANSIENT))
        await recorder.wait_for(
            lambda e: isinstance(e, ChildStarted) and e.child_id == "c"
        )
        started = [
            e.child_id
            for e in recorder.events
            if isinstance(e, ChildStarted) and e.supervisor == SUP
        ]
        assert started == ["a", "b", "c"]
        assert [i.id for i in sup.which_children()] == ["a", "b", "c"]


async def test_a_finished_child_id_can_be_started_again(recorder: Recorder) -> None:
    async with ActorSystem(monitor=recorder) as system:
        sup = await start_sup(system)
        first = ScriptedChild(["exit"])
        sup.start_child_nowait(ChildSpec("job", first, Restart.TRANSIENT))
        await recorder.wait_for(
            lambda e: isinstance(e, ChildExited) and e.child_id == "job"
        )
        # The exit was reported before this request, so the id is free again.
        second = ScriptedChild()
        sup.start_child_nowait(ChildSpec("job", second, Restart.TRANSIENT))
        await recorder.wait_for(
            lambda e: (
                isinstance(e, ChildStarted)
                and e.child_id == "job"
                and len(second.incarnations) == 1
            )
        )
        assert first.incarnations == [1]
        assert [i.id for i in sup.which_children()] == ["job"]


async def test_a_start_failure_reaches_the_monitor(recorder: Recorder) -> None:
    async with ActorSystem(monitor=recorder) as system:
        sup = await start_sup(system)
        sup.start_child_nowait(
            ChildSpec("broken", ScriptedChild(["crash_on_start"]), Restart.TEMPORARY)
        )
        event = await recorder.wait_for(
            lambda e: isinstance(e, ChildExited) and e.child_id == "broken"
        )
        assert isinstance(event, ChildExited)
        assert event.during_start
        with anyio.fail_after(5):
            await anyio.wait_all_tasks_blocked()
        # The supervisor itself is unharmed and forgot the child.
        assert sup.which_children() == []


async def test_a_supervisor_that_is_not_running_refuses() -> None:
    sup = Supervisor()
    with pytest.raises(ActorDeadError):
        sup.start_child_nowait(ChildSpec("x", ScriptedChild()))
