"""Pure cores: intensity window, restart planning, restart rules, backoff, ErrorInfo."""

from __future__ import annotations

import random

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actors import (
    Backoff,
    Crashed,
    ErrorInfo,
    Normal,
    Restart,
    RestartIntensity,
    RestartPlan,
    Shutdown,
    ShutdownPolicy,
    Strategy,
    SupervisorFlags,
    plan_restart,
    plan_shutdown,
    should_restart,
)

CRASH = Crashed(ErrorInfo(type_name="ValueError", message="boom"))


# ------------------------------------------------------------------ intensity


def test_intensity_allows_exactly_intensity_restarts_in_a_window() -> None:
    window = RestartIntensity(3, 5.0)
    assert [window.record(t) for t in (0.0, 1.0, 2.0)] == [True, True, True]
    assert window.record(3.0) is False


def test_intensity_window_is_inclusive_and_slides() -> None:
    window = RestartIntensity(1, 5.0)
    assert window.record(0.0)
    # 5.0 - 0.0 == period: still inside the window (OTP keeps t >= now - period).
    assert window.record(5.0) is False
    window = RestartIntensity(1, 5.0)
    assert window.record(0.0)
    assert window.record(5.01)
    assert window.count(5.01) == 1


def test_intensity_zero_escalates_on_first_restart() -> None:
    assert RestartIntensity(0, 1.0).record(0.0) is False


@pytest.mark.parametrize(("intensity", "period"), [(-1, 1.0), (1, 0.0), (1, -2.0)])
def test_intensity_rejects_bad_arguments(intensity: int, period: float) -> None:
    with pytest.raises(ValueError):
        RestartIntensity(intensity, period)
    with pytest.raises(ValueError):
        SupervisorFlags(intensity=intensity, period=period)


# ------------------------------------------------------------------ planning


@pytest.mark.parametrize(
    ("restart", "reason", "expected"),
    [
        (Restart.PERMANENT, Normal(), True),
        (Restart.PERMANENT, Shutdown(), True),
        (Restart.PERMANENT, CRASH, True),
        (Restart.TRANSIENT, Normal(1), False),
        (Restart.TRANSIENT, Shutdown(), False),
        (Restart.TRANSIENT, CRASH, True),
        (Restart.TEMPORARY, Normal(), False),
        (Restart.TEMPORARY, Shutdown(), False),
        (Restart.TEMPORARY, CRASH, False),
    ],
)
def test_restart_types(restart: Restart, reason: object, expected: bool) -> None:
    assert should_restart(restart, reason) is expected  # type: ignore[arg-type]


CHILDREN = [
    ("a", Restart.PERMANENT),
    ("b", Restart.TEMPORARY),
    ("c", Restart.TRANSIENT),
    ("d", Restart.PERMANENT),
]


def test_plan_one_for_one_touches_only_the_failed_child() -> None:
    assert plan_restart(Strategy.ONE_FOR_ONE, CHILDREN, "c") == RestartPlan(
        stop=(), drop=(), start=("c",)
    )


def test_plan_one_for_all_stops_the_others_in_reverse_and_drops_temporaries() -> None:
    assert plan_restart(Strategy.ONE_FOR_ALL, CHILDREN, "c") == RestartPlan(
        stop=("d", "b", "a"), drop=("b",), start=("a", "c", "d")
    )


def test_plan_rest_for_one_touches_the_suffix() -> None:
    assert plan_restart(Strategy.REST_FOR_ONE, CHILDREN, "b") == RestartPlan(
        stop=("d", "c"), drop=(), start=("b", "c", "d")
    )
    assert plan_restart(Strategy.REST_FOR_ONE, CHILDREN, "d") == RestartPlan(
        stop=(), drop=(), start=("d",)
    )


def test_plan_unknown_child() -> None:
    with pytest.raises(KeyError):
        plan_restart(Strategy.ONE_FOR_ALL, CHILDREN, "zz")


def test_plan_shutdown_is_reverse_start_order() -> None:
    assert plan_shutdown(["a", "b", "c"]) == ("c", "b", "a")


# ------------------------------------------------------------------ the rest


def test_backoff_is_exponential_capped_and_jittered_by_the_given_rng() -> None:
    backoff = Backoff(initial=0.5, max=3.0, multiplier=2.0)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.delay(10_000) == 3.0
    jittered = Backoff(initial=1.0, max=1.0, jitter=0.5)
    a = jittered.delay(1, random.Random(7))
    assert a == jittered.delay(1, random.Random(7))
    assert 1.0 <= a <= 1.5
    with pytest.raises(ValueError):
        backoff.delay(0)
    with pytest.raises(ValueError):
        Backoff(multiplier=0.5)


def test_shutdown_policies() -> None:
    assert ShutdownPolicy.brutal().grace == 0.0
    assert ShutdownPolicy.timeout(2.5).grace == 2.5
    assert ShutdownPolicy.infinity().grace == float("inf")
    with pytest.raises(ValueError):
        ShutdownPolicy.timeout(-1)


def test_error_info_from_exception() -> None:
    try:
        raise KeyError("missing")
    except KeyError as exc:
        info = ErrorInfo.from_exception(exc)
    assert info.type_name == "KeyError"
    assert info.message == "'missing'"
    assert info.traceback is not None
    assert "KeyError: 'missing'" in info.traceback
    assert ErrorInfo.from_exception(ValueError("x")).traceback is None


# ------------------------------------------- the planning + intensity state machine


class SupervisionCore(RuleBasedStateMachine):
    """Random crash and time sequences against plan_restart + RestartIntensity.

    The model replays what a supervisor does with an exit (rules, then intensity, then
    planning) and checks every invariant against an independent history.
    """

    def __init__(self) -> None:
        super().__init__()
        self.intensity = 2
        self.period = 5.0
        self.window = RestartIntensity(self.intensity, self.period)
        self.now = 0.0
        self.restart_times: list[float] = []
        self.escalated = False
        self.strategy = Strategy.ONE_FOR_ONE
        self.children: list[tuple[str, Restart]] = []

    @rule(
        strategy=st.sampled_from(list(Strategy)),
        kinds=st.lists(st.sampled_from(list(Restart)), min_size=1, max_size=5),
    )
    @precondition(lambda self: not self.children)
    def configure(self, strategy: Strategy, kinds: list[Restart]) -> None:
        self.strategy = strategy
        self.children = [(f"c{i}", kind) for i, kind in enumerate(kinds)]

    @rule(seconds=st.floats(min_value=0.0, max_value=4.0))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @rule(data=st.data(), crashed=st.booleans())
    @precondition(lambda self: self.children and not self.escalated)
    def child_exits(self, data: st.DataObject, crashed: bool) -> None:
        child_id, kind = data.draw(st.sampled_from(self.children))
        reason = CRASH if crashed else Normal()
        if not should_restart(kind, reason):
            assert kind is not Restart.PERMANENT
            self.children.remove((child_id, kind))
            return
        assert kind is not Restart.TEMPORARY
        in_window = [t for t in self.restart_times if t >= self.now - self.period]
        expect_escalation = len(in_window) + 1 > self.intensity
        allowed = self.window.record(self.now)
        assert allowed is not expect_escalation
        if not allowed:
            self.escalated = True
            return
        self.restart_times.append(self.now)
        plan = plan_restart(self.strategy, self.children, child_id)
        ids = [cid for cid, _ in self.children]
        index = ids.index(child_id)
        if self.strategy is Strategy.ONE_FOR_ONE:
            affected = [child_id]
        elif self.strategy is Strategy.ONE_FOR_ALL:
            affected = ids
        else:
            affected = ids[index:]
        assert plan.start[0] == child_id or self.strategy is Strategy.ONE_FOR_ALL
        assert set(plan.stop) | {child_id} == set(affected)
        assert child_id not in plan.stop
        # stops run in reverse start order, starts in start order
        assert list(plan.stop) == sorted(plan.stop, key=ids.index, reverse=True)
        assert list(plan.start) == sorted(plan.start, key=ids.index)
        kinds = dict(self.children)
        assert all(kinds[cid] is not Restart.TEMPORARY for cid in plan.start)
        assert set(plan.drop) == {c for c in plan.stop if kinds[c] is Restart.TEMPORARY}
        self.children = [(cid, k) for cid, k in self.children if cid not in plan.drop]

    @invariant()
    def restarts_in_any_window_never_exceed_the_intensity(self) -> None:
        for t in self.restart_times:
            inside = [u for u in self.restart_times if t - self.period <= u <= t]
            assert len(inside) <= self.intensity


SupervisionCore.TestCase.settings = settings(max_examples=150, stateful_step_count=40)
TestSupervisionCore = SupervisionCore.TestCase
