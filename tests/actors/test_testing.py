"""The test helpers themselves: assert_sequence, Probe, Recorder, ScriptedChild."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from actors import ActorSystem, ChildExited, ChildSpec, ChildStarted, Normal
from actors.testing import Probe, Recorder, ScriptedChild, assert_sequence

pytestmark = pytest.mark.anyio

A1 = ChildStarted(supervisor="s", child_id="a", incarnation=1)
B1 = ChildStarted(supervisor="s", child_id="b", incarnation=1)
A1X = ChildExited(supervisor="s", child_id="a", incarnation=1, reason=Normal())


def test_assert_sequence_accepts_matching_templates() -> None:
    assert_sequence([A1, B1, A1X], [ChildStarted, (ChildStarted, "b"), A1X])
    assert_sequence([A1, B1, A1X], [{(ChildStarted, "b"), (ChildStarted, "a", 1)}, A1X])
    assert_sequence([A1, B1], [lambda e: e.child_id == "a", ChildStarted])
    assert_sequence([], [])


@pytest.mark.parametrize(
    "template",
    [
        [ChildStarted, ChildStarted],  # too short
        [ChildStarted, ChildStarted, ChildStarted],  # wrong type at 2
        [(ChildStarted, "b"), ChildStarted, ChildExited],  # order matters outside sets
        [{ChildStarted, ChildExited}, ChildExited],  # set members must all match
        [ChildStarted, ChildStarted, ChildExited, ChildExited],  # too long
        [(ChildStarted, "a", 2), ChildStarted, ChildExited],  # incarnation differs
    ],
)
def test_assert_sequence_rejects_mismatches(template: list[Any]) -> None:
    with pytest.raises(AssertionError):
        assert_sequence([A1, B1, A1X], template)


def test_scripted_child_rejects_unknown_steps() -> None:
    with pytest.raises(ValueError, match="unknown script steps \\['explode'\\]"):
        ScriptedChild(["ok", "explode"])
    script = ScriptedChild(["crash"])
    assert [script.step_for(n) for n in (1, 2, 3)] == ["crash", "ok", "ok"]


async def test_probe_expect_consumes_in_order() -> None:
    probe = Probe(reply=lambda m: m * 2)
    async with ActorSystem() as system:
        ref = await system.spawn(probe.spec())
        for message in (1, "x", 2, "y"):
            await ref.send(message)
        assert await probe.expect(str) == "x"
        assert await probe.expect(int) == 2  # 1 came before "x" and is skipped
        assert await probe.expect(str, lambda m: m == "y") == "y"
        assert await ref.ask(21) == 42
        with pytest.raises(TimeoutError):
            await probe.expect(bytes, timeout=0.001)


async def test_recorder_wait_for_counts_from_the_start() -> None:
    recorder = Recorder()
    async with ActorSystem(monitor=recorder) as system:
        for n in ("a", "b"):
            await system.spawn(ChildSpec(n, ScriptedChild()))
        second = await recorder.wait_for(ChildStarted, count=2)
        assert second.child_id == "b"
        with anyio.fail_after(5), pytest.raises(TimeoutError):
            await recorder.wait_for(ChildStarted, count=3, timeout=0.001)
