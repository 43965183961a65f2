"""Supervision: strategies, restart types, intensity, decider, refs across restarts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anyio
import pytest

from actors import (
    Actor,
    ActorDeadError,
    ActorRef,
    ActorSystem,
    Backoff,
    ChildExited,
    ChildRestarted,
    ChildSpec,
    ChildStarted,
    ChildStartError,
    Crashed,
    ExitReason,
    ManualClock,
    Normal,
    Restart,
    RestartDecision,
    Shutdown,
    ShutdownPolicy,
    Strategy,
    SupervisionEvent,
    Supervisor,
    SupervisorEscalated,
    SupervisorEscalation,
    SupervisorFlags,
)
from actors.testing import (
    Recorder,
    ScriptedChild,
    ScriptedCrash,
    assert_sequence,
    inject_crash,
)

pytestmark = pytest.mark.anyio

SUP = "root/sup"


async def start_sup(
    system: ActorSystem,
    children: Sequence[ChildSpec],
    flags: SupervisorFlags = SupervisorFlags(),  # noqa: B008
    restart: Restart = Restart.TEMPORARY,
    **kwargs: Any,
) -> Supervisor:
    sup = Supervisor(children, flags, **kwargs)
    await system.spawn(
        ChildSpec("sup", lambda: sup, restart, ShutdownPolicy.infinity())
    )
    return sup


def of(recorder: Recorder, supervisor: str = SUP) -> list[SupervisionEvent]:
    return [e for e in recorder.events if e.supervisor == supervisor]


def started(child_id: str, incarnation: int) -> Callable[[SupervisionEvent], bool]:
    return lambda e: (
        isinstance(e, ChildStarted)
        and e.child_id == child_id
        and e.incarnation == incarnation
    )


def restarted(child_id: str, incarnation: int) -> Callable[[SupervisionEvent], bool]:
    return lambda e: (
        isinstance(e, ChildRestarted)
        and e.child_id == child_id
        and e.incarnation == incarnation
    )


def specs(*ids: str, **scripts: ScriptedChild) -> list[ChildSpec]:
    return [ChildSpec(cid, scripts.get(cid) or ScriptedChild()) for cid in ids]


async def test_one_for_one_crash_leaves_siblings_untouched(recorder: Recorder) -> None:
    async with ActorSystem(monitor=recorder) as system:
        sup = await start_sup(system, specs("a", "b", "c"))
        refs = {info.id: info.ref for info in sup.which_children()}
        recorder.clear()
        inject_crash(refs["b"])
        await recorder.wait_for(started("b", 2))
        with anyio.fail_after(5):
            await anyio.wait_all_tasks_blocked()
        assert_sequence(
            of(recorder),
            [(ChildExited, "b", 1), (ChildRestarted, "b", 2), (ChildStarted, "b", 2)],
        )
        assert [(i.id, i.incarnation, i.alive) for i in sup.which_children()] == [
            ("a", 1, True),
            ("b", 2, True),
            ("c", 1, True),
        ]
        # refs are stable across the restart
        assert sup.ref_of("b") == refs["b"]
        assert await refs["b"].ask("hi") == "hi"


async def test_one_for_all_stops_the_rest_in_reverse_then_starts_all_in_order(
    recorder: Recorder,
) -> None:
    flags = SupervisorFlags(strategy=Strategy.ONE_FOR_ALL)
    async with ActorSystem(monitor=recorder) as system:
        sup = await start_sup(system, specs("a", "b", "c"), flags)
        recorder.clear()
        inject_crash(sup.ref_of("b"))
        await recorder.wait_for(started("c", 2))
        events = of(recorder)
    assert_sequence(
        events[:9],
        [
            (ChildExited, "b", 1),
            (ChildExited, "c", 1),
            (ChildExited, "a", 1),
            {
                (ChildRestarted, "a", 2),
                (ChildRestarted, "b", 2),
                (ChildRestarted, "c", 2),
            },
            (ChildStarted, "a", 2),
            (ChildStarted, "b", 2),
            (ChildStarted, "c", 2),
        ],
    )
    assert [e.reason for e in events[1:3]] == [Shutdown(), Shutdown()]  # type: ignore[union-attr]


async def test_rest_for_one_restarts_exactly_the_suffix(recorder: Recorder) -> None:
    flags = SupervisorFlags(strategy=Strategy.REST_FOR_ONE)
    async with ActorSystem(monitor=recorder) as system:
        sup = await start_sup(system, specs("a", "b", "c", "d"), flags)
        recorder.clear()
        inject_crash(sup.ref_of("b"))
        await recorder.wait_for(started("d", 2))
        with anyio.fail_after(5):
            await anyio.wait_all_tasks_blocked()
        assert_sequence(
            of(recorder),
            [
                (ChildExited, "b", 1),
                (ChildExited, "d", 1),
                (ChildExited, "c", 1),
                {(ChildRestarted, "b"), (ChildRestarted, "c"), (ChildRestarted, "d")},
                (ChildStarted, "b", 2),
                (ChildStarted, "c", 2),
                (ChildStarted, "d", 2),
            ],
        )
        assert [i.incarnation for i in sup.which_children()] == [1, 2, 2, 2]


async def test_group_restart_drops_temporary_siblings(recorder: Recorder) -> None:
    flags = SupervisorFlags(strategy=Strategy.ONE_FOR_ALL)
    children = [
        ChildSpec("a", ScriptedChild()),
        ChildSpec("t", ScriptedChild(), Restart.TEMPORARY),
        ChildSpec("b", ScriptedChild()),
    ]
    async with ActorSystem(monitor=recorder) as system:
        sup = await start_sup(system, children, flags)
        temp = sup.ref_of("t")
        inject_crash(sup.ref_of("b"))
        await recorder.wait_for(started("b", 2))
        assert [i.id for i in sup.which_children()] == ["a", "b"]
        assert not temp.is_alive


@pytest.mark.parametrize(
    ("restart", "step", "restarted"),
    [
        (Restart.PERMANENT, "exit", True),
        (Restart.PERMANENT, "crash", True),
        (Restart.TRANSIENT, "exit", False),
        (Restart.TRANSIENT, "crash", True),
        (Restart.TEMPORARY, "exit", False),
        (Restart.TEMPORARY, "crash", False),
    ],
)
async def test_restart_types(
    recorder: Recorder, restart: Restart, step: str, restarted: bool
) -> None:
    script = ScriptedChild([step, "ok"])
    async with ActorSystem(monitor=recorder) as system:
        sup = await start_sup(system, [ChildSpec("x", script, restart)])
        await recorder.wait_for(
            lambda e: isinstance(e, ChildExited) and e.supervisor == SUP
        )
        if restarted:
            await recorder.wait_for(started("x", 2))
            assert [i.incarnation for i in sup.which_children()] == [2]
        else:
            with anyio.fail_after(5):
                while sup.which_children():
                    await anyio.wait_all_tasks_blocked()
            await anyio.wait_all_tasks_blocked()
            assert script.incarnations == [1]
        exit_event = next(e for e in of(recorder) if isinstance(e, ChildExited))
        expected = Normal if step == "exit" else Crashed
        assert isinstance(exit_event.reason, expected)


async def test_crashing_message_is_dropped_and_queued_ones_reach_the_next_one(
    clock: ManualClock, recorder: Recorder
) -> None:
    script = ScriptedChild(["crash_on_message", "ok"])

    async def decide(
        child_id: str, reason: ExitReason, incarnation: int
    ) -> RestartDecision:
        return RestartDecision(True, delay=5.0)

    async with ActorSystem(clock=clock, monitor=recorder) as system:
        sup = await start_sup(system, [ChildSpec("w", script)], decider=decide)
        ref = sup.ref_of("w")
        with pytest.raises(ActorDeadError) as info:
            await ref.ask("first")
        assert isinstance(info.value.__cause__, ScriptedCrash)
        await recorder.wait_for(ChildRestarted)
        # the restart waits 5s on the clock; the slot keeps accepting messages
        assert ref.is_alive
        await ref.send("second")
        await ref.send("third")
        await anyio.wait_all_tasks_blocked()
        assert script.messages == [(1, "first")]
        clock.advance(5.0)
        assert await ref.ask("fourth") == "fourth"
    assert script.messages == [(1, "first"), (2, "second"), (2, "third"), (2, "fourth")]


async def test_intensity_exhaustion_escalates_exactly_on_the_extra_restart(
    clock: ManualClock, recorder: Recorder
) -> None:
    flags = SupervisorFlags(intensity=2, period=5.0)
    escalated: list[SupervisorEscalation] = []
    system = ActorSystem(
        clock=clock, monitor=recorder, flags=SupervisorFlags(intensity=0)
    )
    try:
        async with system:
            # permanent: a temporary child's crash would never reach root's intensity
            sup = await start_sup(
                system, [ChildSpec("w", ScriptedChild())], flags, Restart.PERMANENT
            )
            ref = sup.ref_of("w")
            for n, advance in enumerate([0.0, 3.0, 3.0], start=2):
                clock.advance(advance)
                inject_crash(ref)
                await recorder.wait_for(started("w", n))
            # restarts at t=0, 3, 6: the one at t=0 is outside [1, 6], so no escalation
            assert not recorder.of_type(SupervisorEscalated)
            inject_crash(ref)  # t=6 again: three restarts within 5s -> escalate
            await anyio.sleep_forever()
    except SupervisorEscalation as exc:
        escalated.append(exc)
    assert len(escalated) == 1
    root_escalation = escalated[0]
    assert root_escalation.supervisor == "root"
    assert root_escalation.child_id == "sup"
    inner = root_escalation.__cause__
    assert isinstance(inner, SupervisorEscalation)
    assert (inner.supervisor, inner.child_id, inner.restarts, inner.period) == (
        SUP,
        "w",
        3,
        5.0,
    )
    assert "3 restarts within 5s exceed its intensity" in str(inner)
    assert isinstance(inner.__cause__, ScriptedCrash)
    assert system.escalation is root_escalation
    esc_events = recorder.of_type(SupervisorEscalated)
    assert [(e.supervisor, e.child_id, e.restarts) for e in esc_events] == [
        (SUP, "w", 3),
        ("root", "sup", 1),
    ]


async def test_decider_restarts_do_not_use_up_intensity(
    clock: ManualClock, recorder: Recorder
) -> None:
    calls: list[tuple[str, str, int]] = []

    async def decide(
        child_id: str, reason: ExitReason, incarnation: int
    ) -> RestartDecision:
        calls.append((child_id, type(reason).__name__, incarnation))
        return RestartDecision(incarnation < 6, delay=float(incarnation))

    script = ScriptedChild(["crash"] * 10)
    async with ActorSystem(clock=clock, monitor=recorder) as system:
        sup = await start_sup(
            system,
            [ChildSpec("w", script)],
            SupervisorFlags(intensity=0),
            decider=decide,
        )
        sibling = await sup.start_child(ChildSpec("s", ScriptedChild()))
        for n in range(1, 6):
            await recorder.wait_for(restarted("w", n + 1))
            await anyio.wait_all_tasks_blocked()
            assert clock.pending_sleepers() >= 1
            # the supervisor's loop keeps serving while the restart delay runs
            await sup.start_child(ChildSpec(f"extra{n}", ScriptedChild()))
            assert await sibling.ask(n) == n
            clock.advance(n - 0.25)  # binary fractions: no rounding at the deadline
            await anyio.wait_all_tasks_blocked()
            assert script.incarnations[-1] == n
            clock.advance(0.25)
        with anyio.fail_after(5):
            while "w" in {i.id for i in sup.which_children()}:
                await anyio.wait_all_tasks_blocked()
    assert script.incarnations == [1, 2, 3, 4, 5, 6]
    assert calls == [("w", "Crashed", n) for n in range(1, 7)]
    assert not recorder.of_type(SupervisorEscalated)
    delays = [e.delay for e in recorder.of_type(ChildRestarted)]
    assert delays == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert [e.restarts for e in recorder.of_type(ChildRestarted)] == [0] * 5


async def test_backoff_delays_rule_based_restarts(
    clock: ManualClock, recorder: Recorder
) -> None:
    flags = SupervisorFlags(intensity=5, period=100.0, backoff=Backoff(initial=1.0))
    script = ScriptedChild(["crash", "crash", "ok"])
    async with ActorSystem(clock=clock, monitor=recorder) as system:
        await start_sup(system, [ChildSpec("w", script)], flags)
        for n, delay in ((2, 1.0), (3, 2.0)):
            await recorder.wait_for(ChildRestarted, count=n - 1)
            await anyio.wait_all_tasks_blocked()
            assert script.incarnations == list(range(1, n))
            clock.advance(delay)
            await recorder.wait_for(started("w", n))
    assert [e.delay for e in recorder.of_type(ChildRestarted)] == [1.0, 2.0]
    assert [e.restarts for e in recorder.of_type(ChildRestarted)] == [1, 2]


async def test_start_failure_during_restart_counts_as_a_crash(
    recorder: Recorder,
) -> None:
    script = ScriptedChild(["crash", "crash_on_start", "ok"])
    async with ActorSystem(monitor=recorder) as system:
        sup = await start_sup(system, [ChildSpec("w", script)])
        await recorder.wait_for(started("w", 3))
        assert script.incarnations == [1, 2, 3]
        exits = [e for e in of(recorder) if isinstance(e, ChildExited)]
        assert [(e.incarnation, e.during_start) for e in exits] == [
            (1, False),
            (2, True),
        ]
        assert sup.statistics().restarts == 2


async def test_static_start_failure_stops_started_children_and_fails_the_supervisor(
    recorder: Recorder,
) -> None:
    children = [
        ChildSpec("a", ScriptedChild()),
        ChildSpec("b", ScriptedChild()),
        ChildSpec("c", ScriptedChild(["crash_on_start"])),
    ]
    async with ActorSystem(monitor=recorder) as system:
        with pytest.raises(ChildStartError) as info:
            await start_sup(system, children)
        assert info.value.child_id == "sup"
        inner = info.value.__cause__
        assert isinstance(inner, ChildStartError)
        assert inner.child_id == "c"
        assert isinstance(inner.__cause__, ScriptedCrash)
    assert_sequence(
        of(recorder),
        [
            (ChildStarted, "a", 1),
            (ChildStarted, "b", 1),
            (ChildExited, "c", 1),
            (ChildExited, "b", 1),
            (ChildExited, "a", 1),
        ],
    )


async def test_cancellation_never_counts_as_a_crash(
    clock: ManualClock, recorder: Recorder
) -> None:
    flags = SupervisorFlags(strategy=Strategy.ONE_FOR_ALL, intensity=1)
    hanging = ScriptedChild(["hang"])
    children = [
        ChildSpec("h", hanging, shutdown=ShutdownPolicy.brutal()),
        ChildSpec("t", ScriptedChild(), shutdown=ShutdownPolicy.timeout(1.0)),
    ]
    async with ActorSystem(clock=clock, monitor=recorder) as system:
        sup = await start_sup(system, children, flags)
        await sup.ref_of("h").send("block")  # h now hangs in handle()
        inject_crash(sup.ref_of("t"))
        await recorder.wait_for(started("t", 2))
        h_exit = next(
            e for e in of(recorder) if isinstance(e, ChildExited) and e.child_id == "h"
        )
        assert h_exit.reason == Shutdown()
        assert hanging.stops == [(1, Shutdown())]
        assert not recorder.of_type(SupervisorEscalated)


async def test_timeout_policy_waits_on_the_clock_then_cancels(
    clock: ManualClock, recorder: Recorder
) -> None:
    hanging = ScriptedChild(["hang"])
    async with ActorSystem(clock=clock, monitor=recorder) as system:
        sup = await start_sup(
            system, [ChildSpec("h", hanging, shutdown=ShutdownPolicy.timeout(3.0))]
        )
        await sup.ref_of("h").send("block")
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(sup.terminate_child, "h")
                await anyio.wait_all_tasks_blocked()
                clock.advance(2.9)
                await anyio.wait_all_tasks_blocked()
                assert hanging.stops == []
                clock.advance(0.1)
        assert hanging.stops == [(1, Shutdown())]
        assert sup.which_children() == []


async def test_dynamic_children(recorder: Recorder) -> None:
    async with ActorSystem(monitor=recorder) as system:
        sup = await start_sup(system, [])
        a = await sup.start_child(ChildSpec("a", ScriptedChild()))
        b = await sup.start_child(ChildSpec("b", ScriptedChild()))
        with pytest.raises(ValueError, match="already has a child 'a'"):
            await sup.start_child(ChildSpec("a", ScriptedChild()))
        assert [i.id for i in sup.which_children()] == ["a", "b"]
        stats = sup.statistics()
        assert (stats.children, stats.alive, stats.starts) == (2, 2, 2)
        await sup.terminate_child("a")
        assert not a.is_alive
        assert b.is_alive
        with pytest.raises(KeyError):
            await sup.terminate_child("a")
        with pytest.raises(KeyError):
            sup.ref_of("a")
        a2 = await sup.start_child(ChildSpec("a", ScriptedChild()))
        assert a2.is_alive
        assert [i.id for i in sup.which_children()] == ["b", "a"]


class Dispatcher(Supervisor):
    """The executor pattern: a supervisor whose own messages start one-shot children."""

    def __init__(self) -> None:
        super().__init__((), SupervisorFlags(intensity=0))
        self.n = 0

    async def handle_message(self, message: Any) -> Any:
        self.n += 1
        script = ScriptedChild(["exit"])
        ref = await self.start_child(
            ChildSpec(f"job{self.n}", script, Restart.TRANSIENT)
        )
        return ref


async def test_supervisor_subclass_starts_children_from_its_own_handler(
    recorder: Recorder,
) -> None:
    async with ActorSystem(monitor=recorder) as system:
        dispatcher = Dispatcher()
        ref = await system.spawn(
            ChildSpec("disp", lambda: dispatcher, Restart.TEMPORARY)
        )
        job_refs = [await ref.ask(n) for n in range(20)]
        assert all(isinstance(r, ActorRef) for r in job_refs)
        await recorder.wait_for(
            lambda e: isinstance(e, ChildExited) and e.child_id == "job20"
        )
        with anyio.fail_after(5):
            while dispatcher.which_children():
                await anyio.wait_all_tasks_blocked()
        exits = [e for e in of(recorder, "root/disp") if isinstance(e, ChildExited)]
        assert [e.reason for e in exits] == [Normal(1)] * 20
        assert dispatcher.statistics().children == 0


async def test_plain_supervisor_rejects_user_messages() -> None:
    async with ActorSystem() as system:
        sup = await start_sup(system, [])
        ref = system.root.ref_of("sup")
        with pytest.raises(ActorDeadError) as info:
            await ref.ask("hello")
        assert isinstance(info.value.__cause__, TypeError)
        assert "does not handle messages of type str" in str(info.value.__cause__)
        assert sup.which_children() == []


async def test_ordered_start_each_after_the_previous_on_start(
    recorder: Recorder,
) -> None:
    order: list[str] = []
    probe_refs: dict[str, ActorRef[Any]] = {}

    class Step(Actor[Any]):
        def __init__(self, name: str, previous: str | None) -> None:
            self.label = name
            self.previous = previous

        async def on_start(self) -> None:
            if self.previous is not None:
                # the previous sibling is fully initialised and already serving
                assert await probe_refs[self.previous].ask("ping") == self.previous
            await anyio.lowlevel.checkpoint()
            order.append(self.label)
            probe_refs[self.label] = self.ref

        async def handle(self, message: Any) -> Any:
            return self.label

    def step(label: str, previous: str | None) -> Callable[[], Actor[Any]]:
        return lambda: Step(label, previous)

    children = [
        ChildSpec(n, step(n, p)) for n, p in (("a", None), ("b", "a"), ("c", "b"))
    ]
    async with ActorSystem(monitor=recorder) as system:
        await start_sup(system, children)
        assert order == ["a", "b", "c"]
