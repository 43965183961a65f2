"""One actor: ordering, ask/tell, timeouts, dead actors, backpressure, lifecycle."""

from __future__ import annotations

from typing import Any, ClassVar

import anyio
import msgspec
import pytest

from actors import (
    Actor,
    ActorDeadError,
    ActorSystem,
    AskTimeout,
    ChildSpec,
    ChildStartError,
    Crashed,
    ExitReason,
    ManualClock,
    Normal,
    Restart,
    Shutdown,
    ShutdownPolicy,
)
from actors.testing import Probe, Recorder

pytestmark = pytest.mark.anyio


class Hello(msgspec.Struct, frozen=True):
    sender: int
    seq: int


class Boom(msgspec.Struct, frozen=True):
    pass


class Counter(Actor[Any]):
    """Replies with the running count; crashes on Boom; blocks on an Event."""

    def __init__(self) -> None:
        self.count = 0

    async def handle(self, message: Any) -> Any:
        if isinstance(message, Boom):
            raise ValueError("boom")
        if isinstance(message, anyio.Event):
            await message.wait()
            return "released"
        self.count += 1
        return self.count


class Gate(Actor[Any]):
    """Handles nothing until `gate` is set: lets a test fill the mailbox."""

    mailbox_capacity: ClassVar[float] = 2

    def __init__(self, gate: anyio.Event, seen: list[Any]) -> None:
        self.gate = gate
        self.seen = seen

    async def handle(self, message: Any) -> Any:
        await self.gate.wait()
        self.seen.append(message)
        return message


async def test_per_sender_order_is_preserved() -> None:
    probe = Probe()
    async with ActorSystem() as system:
        ref = await system.spawn(probe.spec())

        async def sender(n: int) -> None:
            for seq in range(50):
                await ref.send(Hello(n, seq))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for n in range(3):
                    tg.start_soon(sender, n)
            await probe.expect(Hello, lambda m: m.sender == 2 and m.seq == 49)
            while len(probe.messages) < 150:
                await anyio.wait_all_tasks_blocked()
    for n in range(3):
        assert [m.seq for m in probe.messages if m.sender == n] == list(range(50))


async def test_ask_returns_handle_result_and_ref_is_usable_from_on_start() -> None:
    seen: list[Any] = []

    class SelfAware(Actor[Any]):
        async def on_start(self) -> None:
            seen.append((self.ref.name, self.incarnation, self.clock))

        async def handle(self, message: Any) -> Any:
            return ("got", message)

    clock = ManualClock()
    async with ActorSystem(clock=clock) as system:
        ref = await system.spawn(ChildSpec("me", SelfAware))
        assert await ref.ask(7) == ("got", 7)
        assert ref.name == "root/me"
    assert seen == [("root/me", 1, clock)]


async def test_ask_timeout_is_measured_on_the_system_clock(clock: ManualClock) -> None:
    gate = anyio.Event()
    async with ActorSystem(clock=clock) as system:
        ref = await system.spawn(ChildSpec("c", Counter))
        outcome: list[BaseException] = []

        async def asker() -> None:
            try:
                await ref.ask(gate, timeout=3.0)
            except AskTimeout as exc:
                outcome.append(exc)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(asker)
                await anyio.wait_all_tasks_blocked()
                clock.advance(2.9)
                await anyio.wait_all_tasks_blocked()
                assert outcome == []
                clock.advance(0.1)
        assert len(outcome) == 1
        assert isinstance(outcome[0], AskTimeout)
        assert "did not reply within 3s" in str(outcome[0])
        assert outcome[0].timeout == 3.0
        gate.set()
        # the actor keeps serving after an abandoned ask
        assert await ref.ask(None, timeout=1.0) == 1


async def test_ask_timeout_on_the_real_clock() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(ChildSpec("c", Counter))
        never = anyio.Event()
        with anyio.fail_after(5), pytest.raises(AskTimeout):
            await ref.ask(never, timeout=0.001)
        never.set()


async def test_ask_crash_fails_with_actor_dead_error_caused_by_the_crash() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(ChildSpec("c", Counter, Restart.TEMPORARY))
        with anyio.fail_after(5), pytest.raises(ActorDeadError) as info:
            await ref.ask(Boom())
        assert "crashed while handling the request" in str(info.value)
        assert isinstance(info.value.__cause__, ValueError)
        assert str(info.value.__cause__) == "boom"


async def test_queued_asks_fail_when_the_actor_stops_for_good() -> None:
    gate = anyio.Event()
    async with ActorSystem() as system:
        ref = await system.spawn(ChildSpec("c", Counter, Restart.TEMPORARY))
        # By position of the ask: the askers may resume in any order.
        outcomes: dict[int, Any] = {}

        async def ask(position: int, message: Any) -> None:
            try:
                outcomes[position] = await ref.ask(message)
            except ActorDeadError as exc:
                outcomes[position] = exc

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for position, message in enumerate((gate, Boom(), 1, 2)):
                    tg.start_soon(ask, position, message)
                    await anyio.wait_all_tasks_blocked()
                assert outcomes == {}
                gate.set()
        assert outcomes[0] == "released"
        failures = [outcomes[1], outcomes[2], outcomes[3]]
        assert all(isinstance(f, ActorDeadError) for f in failures)
        assert "crashed while handling the request" in str(failures[0])
        assert all(
            "stopped before handling the request" in str(f) for f in failures[1:]
        )
        assert all(isinstance(f.__cause__, ValueError) for f in failures)
        assert not ref.is_alive
        with pytest.raises(ActorDeadError, match="is stopped"):
            await ref.send(1)
        with pytest.raises(ActorDeadError):
            ref.send_nowait(1)
        with pytest.raises(ActorDeadError):
            await ref.ask(1)


async def test_backpressure_blocks_senders_and_send_nowait_would_block() -> None:
    gate = anyio.Event()
    seen: list[Any] = []
    async with ActorSystem() as system:
        ref = await system.spawn(ChildSpec("g", lambda: Gate(gate, seen)))
        delivered: list[int] = []

        async def send(n: int) -> None:
            await ref.send(n)
            delivered.append(n)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                # 0 is being handled (blocked on the gate), 1 and 2 fill the mailbox
                for n in range(3):
                    await ref.send(n)
                    await anyio.wait_all_tasks_blocked()
                with pytest.raises(anyio.WouldBlock):
                    ref.send_nowait(99)
                tg.start_soon(send, 3)
                await anyio.wait_all_tasks_blocked()
                assert delivered == []
                gate.set()
            assert await ref.ask("last") == "last"
        assert delivered == [3]
        assert seen == [0, 1, 2, 3, "last"]


async def test_blocked_sender_fails_when_the_actor_dies() -> None:
    gate = anyio.Event()
    async with ActorSystem() as system:
        ref = await system.spawn(
            ChildSpec("g", lambda: Gate(gate, []), shutdown=ShutdownPolicy.brutal())
        )
        for n in range(3):
            await ref.send(n)
            await anyio.wait_all_tasks_blocked()
        errors: list[BaseException] = []

        async def send() -> None:
            try:
                await ref.send("blocked")
            except ActorDeadError as exc:
                errors.append(exc)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(send)
                await anyio.wait_all_tasks_blocked()
                assert errors == []
                await system.root.terminate_child("g")
        assert len(errors) == 1
        assert not ref.is_alive


async def test_stop_value_is_the_normal_exit_reason(recorder: Recorder) -> None:
    class OneShot(Actor[Any]):
        async def on_start(self) -> None:
            self.stop({"result": 42})

    async with ActorSystem(monitor=recorder) as system:
        ref = await system.spawn(ChildSpec("job", OneShot, Restart.TRANSIENT))
        event = await recorder.wait_for(
            lambda e: getattr(e, "reason", None) is not None
        )
        assert event.reason == Normal({"result": 42})  # type: ignore[union-attr]
        with anyio.fail_after(5):
            while ref.is_alive:
                await anyio.wait_all_tasks_blocked()
        # a finished dynamic child is forgotten at once and its id can be reused
        assert system.root.which_children() == []
        again = await system.spawn(ChildSpec("job", OneShot, Restart.TRANSIENT))
        assert again != ref


async def test_lifecycle_hooks_and_exit_reasons() -> None:
    log: list[Any] = []

    class Hooks(Actor[Any]):
        async def on_start(self) -> None:
            log.append(("start", self.incarnation))

        async def handle(self, message: Any) -> Any:
            if message == "crash":
                raise RuntimeError("bad")
            if message == "stop":
                self.stop("bye")
            return message

        async def on_stop(self, reason: ExitReason) -> None:
            log.append(("stop", self.incarnation, reason))

    async with ActorSystem() as system:
        ref = await system.spawn(ChildSpec("h", Hooks))
        with pytest.raises(ActorDeadError):
            await ref.ask("crash")
        assert await ref.ask("ok") == "ok"  # incarnation 2 (same ref)
        assert await ref.ask("stop") == "stop"
        assert await ref.ask("after") == "after"  # permanent: restarted after Normal
    kinds = [entry[0] for entry in log]
    assert kinds == ["start", "stop", "start", "stop", "start", "stop"]
    reasons = [entry[2] for entry in log if entry[0] == "stop"]
    assert isinstance(reasons[0], Crashed)
    assert reasons[0].error.type_name == "RuntimeError"
    assert reasons[1] == Normal("bye")
    assert reasons[2] == Shutdown()


async def test_on_stop_failure_turns_a_clean_exit_into_a_crash(
    recorder: Recorder,
) -> None:
    class BadCleanup(Actor[Any]):
        async def on_start(self) -> None:
            self.stop()

        async def on_stop(self, reason: ExitReason) -> None:
            raise OSError("disk gone")

    async with ActorSystem(monitor=recorder) as system:
        await system.spawn(ChildSpec("b", BadCleanup, Restart.TEMPORARY))
        event = await recorder.wait_for(lambda e: hasattr(e, "reason"))
    reason = event.reason  # type: ignore[union-attr]
    assert isinstance(reason, Crashed)
    assert reason.error.type_name == "OSError"


async def test_on_stop_is_cut_off_at_its_deadline(clock: ManualClock) -> None:
    stopped: list[str] = []

    class SlowCleanup(Actor[Any]):
        stop_timeout = 2.0

        async def on_stop(self, reason: ExitReason) -> None:
            try:
                await anyio.sleep_forever()
            finally:
                stopped.append("cut")

    async with ActorSystem(clock=clock) as system:
        await system.spawn(
            ChildSpec("s", SlowCleanup, shutdown=ShutdownPolicy.brutal())
        )
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(system.root.terminate_child, "s")
                await anyio.wait_all_tasks_blocked()
                assert stopped == []
                clock.advance(2.0)
    assert stopped == ["cut"]


async def test_on_start_failure_raises_child_start_error(recorder: Recorder) -> None:
    class Broken(Actor[Any]):
        async def on_start(self) -> None:
            raise LookupError("no config")

    async with ActorSystem(monitor=recorder) as system:
        with pytest.raises(ChildStartError) as info:
            await system.spawn(ChildSpec("broken", Broken))
        assert info.value.child_id == "broken"
        assert "'broken' failed to start" in str(info.value)
        assert isinstance(info.value.__cause__, LookupError)
        assert system.root.which_children() == []
        # the failed id is free again
        with pytest.raises(ChildStartError):
            await system.spawn(ChildSpec("broken", Broken))
    exits = [e for e in recorder.events if getattr(e, "during_start", False)]
    assert len(exits) == 2


async def test_factory_failure_raises_child_start_error() -> None:
    def factory() -> Actor[Any]:
        raise RuntimeError("cannot build")

    async with ActorSystem() as system:
        with pytest.raises(ChildStartError) as info:
            await system.spawn(ChildSpec("f", factory))
        assert isinstance(info.value.__cause__, RuntimeError)


async def test_default_handle_rejects_messages() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(ChildSpec("plain", Actor, Restart.TEMPORARY))
        with pytest.raises(ActorDeadError) as info:
            await ref.ask(Hello(1, 1))
        assert isinstance(info.value.__cause__, TypeError)
        assert "does not handle messages of type Hello" in str(info.value.__cause__)


async def test_unbounded_mailbox() -> None:
    gate = anyio.Event()

    class Unbounded(Gate):
        mailbox_capacity = float("inf")

    seen: list[Any] = []
    async with ActorSystem() as system:
        ref = await system.spawn(ChildSpec("u", lambda: Unbounded(gate, seen)))
        for n in range(5000):
            ref.send_nowait(n)
        gate.set()
        assert await ref.ask("end") == "end"
    assert seen == [*range(5000), "end"]
