"""ActorSystem: graceful shutdown, deadlines, escalation, cancellation hygiene."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from actors import (
    Actor,
    ActorDeadError,
    ActorSystem,
    ChildExited,
    ChildSpec,
    ExitReason,
    MailboxClosedError,
    ManualClock,
    Restart,
    Shutdown,
    ShutdownPolicy,
    SupervisorEscalation,
    SupervisorFlags,
)
from actors.testing import Recorder, ScriptedChild, ScriptedCrash, inject_crash

pytestmark = pytest.mark.anyio


class Logger(Actor[Any]):
    """Logs every message and its own stop; a message that is an Event blocks on it."""

    def __init__(self, label: str, log: list[Any]) -> None:
        self.label = label
        self.log = log

    async def handle(self, message: Any) -> Any:
        if isinstance(message, anyio.Event):
            await message.wait()
            return "released"
        self.log.append((self.label, message))
        return message

    async def on_stop(self, reason: ExitReason) -> None:
        self.log.append((self.label, "stopped", reason))


def logger_spec(label: str, log: list[Any], **kwargs: Any) -> ChildSpec:
    return ChildSpec(label, lambda: Logger(label, log), **kwargs)


async def test_shutdown_drains_mailboxes_and_stops_in_reverse_order() -> None:
    log: list[Any] = []
    gate = anyio.Event()
    system = ActorSystem()
    async with system:
        refs = [await system.spawn(logger_spec(n, log)) for n in ("a", "b", "c")]
        a, _, c = refs
        await c.send(gate)  # c is busy until the gate opens
        await c.send("c1")
        await c.send("c2")
        replies: list[Any] = []

        async def ask_c() -> None:
            replies.append(await c.ask("c3"))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(ask_c)
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(system.shutdown)
                await anyio.wait_all_tasks_blocked()
                # c's turn has come: intake closed, queued messages still pending
                with pytest.raises(MailboxClosedError, match="is shutting down"):
                    c.send_nowait("late")
                with pytest.raises(MailboxClosedError):
                    await system.spawn(logger_spec("d", log))
                # a's turn has not come yet: it still takes messages
                await a.send("a1")
                gate.set()
        assert replies == ["c3"]
        assert not any(ref.is_alive for ref in refs)
        with pytest.raises(ActorDeadError, match="is stopped"):
            await a.send("too late")
    order = [entry[0] for entry in log if entry[1] == "stopped"]
    assert order == ["c", "b", "a"]
    c_log = [entry for entry in log if entry[0] == "c"]
    assert c_log == [("c", m) for m in ("c1", "c2", "c3")] + [
        ("c", "stopped", Shutdown())
    ]
    assert ("a", "a1") in log
    assert log.index(("a", "a1")) < log.index(("a", "stopped", Shutdown()))
    assert all(entry[2] == Shutdown() for entry in log if entry[1] == "stopped")


async def test_shutdown_deadline_cancels_what_is_left(clock: ManualClock) -> None:
    log: list[Any] = []
    gate = anyio.Event()
    async with ActorSystem(clock=clock, shutdown_timeout=30.0) as system:
        stuck = await system.spawn(
            logger_spec("stuck", log, shutdown=ShutdownPolicy.infinity())
        )
        await stuck.send(gate)
        finished: list[str] = []

        async def shut() -> None:
            await system.shutdown(timeout=2.0)
            finished.append("done")

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(shut)
                await anyio.wait_all_tasks_blocked()
                clock.advance(1.5)
                await anyio.wait_all_tasks_blocked()
                assert finished == []
                clock.advance(0.5)
        assert finished == ["done"]
        # a second call is a no-op
        await system.shutdown()
    assert log == [("stuck", "stopped", Shutdown())]


async def test_escalation_cancels_the_body_and_is_raised_by_aexit(
    recorder: Recorder,
) -> None:
    system = ActorSystem(monitor=recorder, flags=SupervisorFlags(intensity=0))
    reached_end = False
    # The error comes from leaving the block, so the block holds the whole scenario.
    with pytest.raises(SupervisorEscalation) as info:  # noqa: PT012
        async with system:
            ref = await system.spawn(ChildSpec("w", ScriptedChild()))
            inject_crash(ref, ScriptedCrash("fatal"))
            await anyio.sleep_forever()
            reached_end = True
    assert not reached_end
    escalation = info.value
    assert system.escalation is escalation
    assert (escalation.supervisor, escalation.child_id, escalation.restarts) == (
        "root",
        "w",
        1,
    )
    assert isinstance(escalation.__cause__, ScriptedCrash)
    assert str(escalation.__cause__) == "fatal"


async def test_wait_escalated_from_outside_the_body() -> None:
    system = ActorSystem(flags=SupervisorFlags(intensity=0))
    told: list[SupervisorEscalation] = []
    async with anyio.create_task_group() as outer:

        async def run() -> None:
            with pytest.raises(SupervisorEscalation):  # noqa: PT012 - raised on exit
                async with system:
                    ref = await system.spawn(ChildSpec("w", ScriptedChild()))
                    inject_crash(ref)
                    await anyio.sleep_forever()

        async def watch() -> None:
            told.append(await system.wait_escalated())

        outer.start_soon(run)
        await anyio.wait_all_tasks_blocked()
        outer.start_soon(watch)
    assert told == [system.escalation]


async def test_root_crash_on_a_stray_message_is_an_escalation() -> None:
    system = ActorSystem()
    with pytest.raises(SupervisorEscalation) as info:  # noqa: PT012 - raised on exit
        async with system:
            with pytest.raises(ActorDeadError):
                await system.root.ref.ask("stray")
            await anyio.sleep_forever()
    assert isinstance(info.value.__cause__, TypeError)
    assert "crashed" in str(info.value)


async def test_body_error_propagates_unwrapped_after_a_graceful_shutdown() -> None:
    log: list[Any] = []
    with pytest.raises(KeyError, match="oops"):  # noqa: PT012 - raised in the body
        async with ActorSystem() as system:
            await system.spawn(logger_spec("a", log))
            raise KeyError("oops")
    assert log == [("a", "stopped", Shutdown())]


async def test_outside_cancellation_skips_graceful_shutdown_but_runs_on_stop() -> None:
    log: list[Any] = []
    with anyio.CancelScope() as scope:
        async with ActorSystem() as system:
            ref = await system.spawn(logger_spec("a", log))
            await ref.send("queued-1")
            await ref.send(anyio.Event())  # blocks a forever
            await ref.send("queued-2")
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert log == [("a", "queued-1"), ("a", "stopped", Shutdown())]
    assert not ref.is_alive


async def test_no_task_is_leaked() -> None:
    before = {task.id for task in anyio.get_running_tasks()}
    async with ActorSystem() as system:
        await system.spawn(ChildSpec("a", ScriptedChild(["crash"])))
        await system.spawn(ChildSpec("b", ScriptedChild(), Restart.TEMPORARY))
    after = {task.id for task in anyio.get_running_tasks()}
    assert after == before


async def test_misuse() -> None:
    system = ActorSystem()
    with pytest.raises(RuntimeError, match="not running"):
        await system.spawn(ChildSpec("a", ScriptedChild()))
    with pytest.raises(RuntimeError, match="not running"):
        await system.wait_escalated()
    async with system:
        pass
    with pytest.raises(RuntimeError, match="entered only once"):
        async with system:
            pass
    with pytest.raises(MailboxClosedError):
        await system.spawn(ChildSpec("a", ScriptedChild()))


async def test_root_start_failure_raises_child_start_error() -> None:
    from actors import ChildStartError

    class BadRoot(ActorSystem):
        pass

    system = BadRoot()

    async def boom() -> None:
        raise OSError("no")

    system.root.on_start = boom  # type: ignore[method-assign]
    with pytest.raises(ChildStartError) as info:
        async with system:
            pass
    assert info.value.child_id == "root"
    assert isinstance(info.value.__cause__, OSError)


async def test_exits_during_shutdown_are_reported(recorder: Recorder) -> None:
    async with ActorSystem(monitor=recorder) as system:
        for n in ("a", "b"):
            await system.spawn(ChildSpec(n, ScriptedChild()))
    exits = recorder.of_type(ChildExited)
    assert [(e.child_id, e.reason) for e in exits] == [
        ("b", Shutdown()),
        ("a", Shutdown()),
    ]
