"""The trigger decorator's registration half and TriggerResult (API.md 3.11-3.12)."""

from __future__ import annotations

import pytest

import cloaca
from cloaca import Context, TriggerResult, registry
from cloaca.trigger import parse_poll_interval


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("100ms", 100),
        ("5s", 5000),
        ("2m", 120000),
        ("10", 10000),
        ("+5s", 5000),
        ("0", 0),
        ("0ms", 0),
        ("  7s\t", 7000),
    ],
)
def test_valid_poll_intervals(text: str, ms: int) -> None:
    assert parse_poll_interval(text) == ms


@pytest.mark.parametrize(
    ("text", "echo"),
    [
        ("1h", "1h"),
        ("1.5s", "1.5s"),
        ("5S", "5S"),
        ("5 s", "5 s"),
        ("", ""),
        ("-5s", "-5s"),
        ("  ms ", "ms"),
        ("99999999999999999999s", "99999999999999999999s"),
    ],
)
def test_invalid_poll_intervals(text: str, echo: str) -> None:
    with pytest.raises(ValueError) as info:
        cloaca.trigger("wf", poll_interval=text)
    assert str(info.value) == f"Invalid poll_interval: Invalid duration: {echo}"
    assert isinstance(info.value, cloaca.CloacaError)


def test_decorator_registers_and_returns_the_function() -> None:
    def check() -> TriggerResult:
        return TriggerResult.skip()

    decorated = cloaca.trigger("orders", poll_interval="250ms", allow_concurrent=True)(
        check
    )
    assert decorated is check
    spec = registry.get_trigger("check")
    assert spec is not None
    assert (spec.name, spec.workflow, spec.poll_interval_ms, spec.allow_concurrent) == (
        "check",
        "orders",
        250,
        True,
    )
    assert spec.function is check
    assert spec.is_async is False
    assert check().is_skip_result()


def test_defaults_name_and_replacement() -> None:
    @cloaca.trigger("wf1", name="watch")
    def a() -> TriggerResult:
        return TriggerResult.skip()

    @cloaca.trigger("wf2", name="watch")
    async def b() -> TriggerResult:
        return TriggerResult.fire()

    spec = registry.get_trigger("watch")
    assert spec is not None
    assert spec.workflow == "wf2"
    assert spec.poll_interval_ms == 5000
    assert spec.allow_concurrent is False
    assert spec.is_async is True


def test_trigger_argument_types() -> None:
    with pytest.raises(TypeError):
        cloaca.trigger(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        cloaca.trigger("wf", allow_concurrent=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        cloaca.trigger("wf", poll_interval=5)  # type: ignore[arg-type]


def test_trigger_result_factories_and_reprs() -> None:
    skip = TriggerResult.skip()
    assert skip.is_skip_result()
    assert not skip.is_fire_result()
    assert repr(skip) == "TriggerResult.Skip"
    bare = TriggerResult.fire()
    assert bare.is_fire_result()
    assert not bare.is_skip_result()
    assert repr(bare) == "TriggerResult.Fire(None)"
    assert bare._context is None
    with_ctx = TriggerResult.fire(Context({"a": 1}))
    assert repr(with_ctx) == "TriggerResult.Fire(<context>)"


def test_fire_copies_the_context_at_call_time() -> None:
    ctx = Context({"items": [1]})
    result = TriggerResult.fire(ctx)
    ctx.set("items", [1, 2])
    ctx.set("later", True)
    assert result._context == {"items": [1]}


def test_fire_rejects_non_context_and_no_constructor() -> None:
    with pytest.raises(TypeError):
        TriggerResult.fire({"a": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        TriggerResult()
