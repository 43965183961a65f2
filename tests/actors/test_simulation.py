"""The simulation transport and clock driver (actors.simulation).

A held message reaches its actor later but in the order the real mailbox would hold
it; an injected crash is an ordinary crash that the supervisor restarts, with the
message before which it struck handled by the next incarnation; a halt stops all
handling; the trace of a seeded run is the same every time.
"""

from __future__ import annotations

import random
from typing import Any

import anyio
import pytest

from actors import Actor, ActorSystem, AskTimeout, ChildSpec, ManualClock
from actors.simulation import (
    ORDER_PER_SENDER,
    Fault,
    FaultRule,
    RandomPolicy,
    SimTransport,
    drive_clock,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """The simulation reads asyncio's ready queue: asyncio only."""
    return "asyncio"


class Recorder(Actor[Any]):
    """Appends every message to a shared list; ``"stop?"`` asks are answered."""

    mailbox_capacity = float("inf")

    def __init__(self, seen: list[tuple[int, Any]]) -> None:
        self.seen = seen

    async def handle(self, message: Any) -> Any:
        self.seen.append((self.incarnation, message))
        return message


class Forwarder(Actor[Any]):
    """Sends every message it gets on to ``target`` (another sender than the test)."""

    mailbox_capacity = float("inf")

    def __init__(self, target: Any) -> None:
        self.target = target

    async def handle(self, message: Any) -> None:
        self.target().send_nowait(message)


class Delays:
    """A policy that holds the listed messages for the given seconds."""

    def __init__(self, delays: dict[Any, float], faults: dict[Any, Fault]) -> None:
        self.delays = delays
        self.faults = faults

    def delay(self, receiver: str, message: object) -> float | None:
        return self.delays.get(message)

    def fault(self, receiver: str, message: object) -> Fault | None:
        if receiver.endswith("recorder"):
            return self.faults.pop(message, None)
        return None


async def run_system(
    transport: SimTransport, clock: ManualClock, body: Any
) -> list[tuple[int, Any]]:
    seen: list[tuple[int, Any]] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(drive_clock, clock)
        with transport.installed():
            async with ActorSystem(clock=clock) as system:
                recorder = await system.spawn(
                    ChildSpec(id="recorder", factory=lambda: Recorder(seen))
                )
                forwarder = await system.spawn(
                    ChildSpec(
                        id="forwarder",
                        factory=lambda: Forwarder(lambda: recorder),
                    )
                )
                await body(recorder, forwarder)
        tg.cancel_scope.cancel()
    return seen


async def test_held_messages_keep_the_order_they_were_sent_in() -> None:
    clock = ManualClock()
    transport = SimTransport(clock, Delays({"a": 0.5, "c": 0.0}, {}))

    async def body(recorder: Any, forwarder: Any) -> None:
        recorder.send_nowait("a")  # held 0.5 s
        await forwarder.ask("b")  # another sender, not held, sent later
        recorder.send_nowait("c")
        assert await recorder.ask("d") == "d"

    seen = await run_system(transport, clock, body)
    assert [m for _, m in seen] == ["a", "b", "c", "d"]
    assert clock.monotonic() >= 0.5
    kinds = [event[1] for event in transport.trace if event[1] != "handle"]
    assert kinds[:2] == ["hold", "send"]


async def test_per_sender_order_lets_other_senders_overtake() -> None:
    clock = ManualClock()
    transport = SimTransport(clock, Delays({"a": 0.5}, {}), order=ORDER_PER_SENDER)

    async def body(recorder: Any, forwarder: Any) -> None:
        recorder.send_nowait("a")  # held
        await forwarder.ask("b")  # from the forwarder: may overtake "a"
        recorder.send_nowait("c")  # from the test: stays behind "a"
        await clock.sleep(1.0)

    seen = await run_system(transport, clock, body)
    assert [m for _, m in seen] == ["b", "a", "c"]


async def test_crash_before_leaves_the_message_for_the_next_incarnation() -> None:
    clock = ManualClock()
    transport = SimTransport(clock, Delays({}, {"b": Fault.CRASH_BEFORE}))

    async def body(recorder: Any, forwarder: Any) -> None:
        recorder.send_nowait("a")
        recorder.send_nowait("b")
        assert await recorder.ask("c") == "c"

    seen = await run_system(transport, clock, body)
    assert seen == [(1, "a"), (2, "b"), (2, "c")]
    assert transport.injected[Fault.CRASH_BEFORE] == 1


async def test_crash_after_strikes_once_the_message_is_handled() -> None:
    clock = ManualClock()
    transport = SimTransport(clock, Delays({}, {"a": Fault.CRASH_AFTER}))

    async def body(recorder: Any, forwarder: Any) -> None:
        recorder.send_nowait("a")
        recorder.send_nowait("b")
        assert await recorder.ask("c") == "c"

    seen = await run_system(transport, clock, body)
    assert seen == [(1, "a"), (2, "b"), (2, "c")]


async def test_a_halt_stops_all_handling_and_calls_the_owner() -> None:
    clock = ManualClock()
    halted = anyio.Event()
    transport = SimTransport(
        clock, Delays({}, {"b": Fault.HALT_BEFORE}), on_halt=halted.set
    )

    async def body(recorder: Any, forwarder: Any) -> None:
        recorder.send_nowait("a")
        recorder.send_nowait("b")
        await halted.wait()
        forwarder.send_nowait("lost")
        with pytest.raises(AskTimeout):
            await recorder.ask("never answered", timeout=0.5)

    seen = await run_system(transport, clock, body)
    assert seen == [(1, "a")]
    assert transport.halted
    assert ("halt",) in [event[1:] for event in transport.trace]


def seeded_run(seed: int) -> tuple[list[tuple[Any, ...]], list[tuple[int, Any]]]:
    async def main() -> tuple[list[tuple[Any, ...]], list[tuple[int, Any]]]:
        clock = ManualClock()
        rng = random.Random(seed)
        policy = RandomPolicy(
            rng,
            delay_probability=0.5,
            max_delay=0.1,
            faults=[FaultRule(Fault.CRASH_AFTER, 0.2, actors=("*recorder",), budget=3)],
        )
        transport = SimTransport(clock, policy)

        async def body(recorder: Any, forwarder: Any) -> None:
            for n in range(30):
                (recorder if n % 2 else forwarder).send_nowait(n)
            await clock.sleep(5.0)

        seen = await run_system(transport, clock, body)
        return transport.trace, seen

    return anyio.run(main, backend="asyncio")


def test_one_seed_gives_one_trace() -> None:
    first = seeded_run(7)
    assert seeded_run(7) == first
    assert seeded_run(8) != first
    trace, seen = first
    # Every message is handled once, held ones and crashes notwithstanding.
    assert sorted(m for _, m in seen) == list(range(30))
    kinds = {event[1] for event in trace}
    assert {"hold", "release", "crash-after"} <= kinds


def test_random_policy_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="delay_probability must be within"):
        RandomPolicy(random.Random(1), delay_probability=1.5)
    with pytest.raises(ValueError, match="max_delay must be finite"):
        RandomPolicy(random.Random(1), max_delay=float("inf"))
    with pytest.raises(ValueError, match="order must be"):
        SimTransport(ManualClock(), RandomPolicy(random.Random(1)), order="any")


async def test_drive_clock_reports_idleness_instead_of_sleeping() -> None:
    clock = ManualClock()
    idle = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: drive_clock(clock, on_idle=idle.set))
        await clock.sleep(3600.0)
        assert clock.monotonic() == 3600.0
        await idle.wait()
        tg.cancel_scope.cancel()
