"""Context (API.md 3.3, 1.5): mapping behaviour, by-value semantics, JSON, errors."""

from __future__ import annotations

import datetime
import decimal
import json
import math
from collections import OrderedDict
from typing import Any

import pytest

import cloaca
from cloaca.context import (
    Context,
    decode_context_data,
    encode_context_data,
    validate_value,
)


def test_constructor_copies_data() -> None:
    data: dict[str, Any] = {"a": [1, 2], "b": {"c": 1}}
    ctx = Context(data)
    data["a"].append(3)
    data["b"]["c"] = 2
    assert ctx.get("a") == [1, 2]
    assert ctx.get("b") == {"c": 1}


def test_empty_and_none_constructor() -> None:
    assert len(Context()) == 0
    assert len(Context(None)) == 0


@pytest.mark.parametrize(
    "bad", [[("a", 1)], "abc", 3, OrderedDict.fromkeys("a").keys()]
)
def test_constructor_rejects_non_dict(bad: Any) -> None:
    with pytest.raises(TypeError):
        Context(bad)


def test_constructor_rejects_non_str_key() -> None:
    with pytest.raises(TypeError):
        Context({1: "x"})  # type: ignore[dict-item]


def test_get_returns_copy_and_default_itself() -> None:
    ctx = Context({"items": [1, 2]})
    got = ctx.get("items")
    got.append(99)
    assert ctx.get("items") == [1, 2]
    sentinel: list[int] = []
    assert ctx.get("missing", sentinel) is sentinel
    assert ctx.get("missing") is None


def test_get_of_stored_none_ignores_default() -> None:
    ctx = Context({"k": None})
    assert ctx.get("k", "default") is None


def test_set_copies_value() -> None:
    ctx = Context()
    value = {"nested": [1]}
    ctx.set("v", value)
    value["nested"].append(2)
    assert ctx.get("v") == {"nested": [1]}


def test_insert_duplicate_raises_value_error_with_reference_message() -> None:
    ctx = Context({"a": 1})
    with pytest.raises(ValueError) as info:
        ctx.insert("a", 2)
    assert str(info.value) == "Key already exists: Key already exists: a"
    assert isinstance(info.value, cloaca.ContextError)
    assert ctx.get("a") == 1
    ctx.insert("b", 2)
    assert ctx.get("b") == 2


def test_update_missing_raises_key_error_with_reference_message() -> None:
    ctx = Context()
    with pytest.raises(KeyError) as info:
        ctx.update("a", 1)
    assert str(info.value) == "Key not found: Key not found: a"
    assert isinstance(info.value, cloaca.ContextError)
    ctx.set("a", 1)
    ctx.update("a", 5)
    assert ctx.get("a") == 5


def test_remove_returns_value_or_none() -> None:
    ctx = Context({"a": [1]})
    assert ctx.remove("a") == [1]
    assert "a" not in ctx
    assert ctx.remove("a") is None


def test_getitem_missing_and_stored_none_raise_key_error() -> None:
    ctx = Context({"n": None, "v": 0})
    for key in ("n", "missing"):
        with pytest.raises(KeyError) as info:
            ctx[key]
        assert str(info.value) == f"Key not found: '{key}'"
        assert isinstance(info.value, cloaca.ContextError)
    assert ctx["v"] == 0


def test_setitem_delitem_contains_len() -> None:
    ctx = Context()
    ctx["a"] = (1, 2)
    assert ctx["a"] == [1, 2]
    assert "a" in ctx
    assert len(ctx) == 1
    del ctx["a"]
    assert "a" not in ctx
    with pytest.raises(KeyError) as info:
        del ctx["a"]
    assert str(info.value) == "Key not found: 'a'"


def test_contains_counts_none_values_and_rejects_non_str() -> None:
    ctx = Context({"n": None})
    assert "n" in ctx
    with pytest.raises(TypeError):
        _ = 1 in ctx


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.get(1),
        lambda c: c.set(1, 1),
        lambda c: c.insert(None, 1),
        lambda c: c.update(b"k", 1),
        lambda c: c.remove(1.0),
        lambda c: c[1],
    ],
)
def test_non_str_keys_raise_type_error(call: Any) -> None:
    with pytest.raises(TypeError):
        call(Context({"1": 1}))


def test_not_iterable_and_no_dict_views() -> None:
    ctx = Context({"a": 1})
    with pytest.raises(TypeError):
        iter(ctx)  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        dict(ctx)  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        list(ctx)  # type: ignore[call-overload]
    for name in ("keys", "items", "values", "data", "delete", "get_required"):
        assert not hasattr(ctx, name)


def test_equality_is_identity() -> None:
    a, b = Context({"x": 1}), Context({"x": 1})
    assert a != b
    assert a == a


def test_to_dict_is_a_deep_copy() -> None:
    ctx = Context({"a": {"b": [1]}})
    out = ctx.to_dict()
    out["a"]["b"].append(2)
    out["new"] = 1
    assert ctx.to_dict() == {"a": {"b": [1]}}


def test_update_from_dict_sets_items_and_requires_dict() -> None:
    ctx = Context({"a": 1})
    ctx.update_from_dict({"a": 2, "b": 3})
    assert ctx.to_dict() == {"a": 2, "b": 3}
    with pytest.raises(TypeError):
        ctx.update_from_dict([("c", 1)])  # type: ignore[arg-type]


def test_update_from_dict_is_all_or_nothing() -> None:
    ctx = Context({"a": 1})
    with pytest.raises(TypeError):
        ctx.update_from_dict({"a": 2, "b": object()})
    assert ctx.to_dict() == {"a": 1}


def test_to_json_is_compact_and_unescaped() -> None:
    ctx = Context({"a": 1, "b": [1, 2], "t": "héllo ✓"})
    assert ctx.to_json() == '{"a":1,"b":[1,2],"t":"héllo ✓"}'
    assert repr(ctx) == 'Context({"a":1,"b":[1,2],"t":"héllo ✓"})'
    assert repr(Context()) == "Context({})"


def test_from_json_round_trip() -> None:
    text = '{"x": {"y": [1, 2.5, null, false]}, "s": "é"}'
    ctx = Context.from_json(text)
    assert ctx.to_dict() == json.loads(text)
    assert Context.from_json(ctx.to_json()).to_dict() == ctx.to_dict()


@pytest.mark.parametrize("text", ["{bad", "[1, 2]", "3", '"s"', "", "null"])
def test_from_json_invalid_raises_value_error(text: str) -> None:
    with pytest.raises(ValueError) as info:
        Context.from_json(text)
    assert str(info.value).startswith("Failed to deserialize from JSON:")


def test_from_json_rejects_numbers_out_of_range() -> None:
    with pytest.raises(ValueError) as info:
        Context.from_json('{"a": 18446744073709551616}')
    assert str(info.value).startswith("Failed to deserialize from JSON:")
    assert "JSON number out of range" in str(info.value)


def test_json_value_conversions() -> None:
    ctx = Context()
    ctx.set("t", (1, (2, 3)))
    ctx.set("s", {5})
    ctx.set("f", frozenset({"x"}))
    ctx.set("nan", math.nan)
    ctx.set("inf", -math.inf)
    ctx.set("big", 2**64 - 1)
    ctx.set("small", -(2**63))
    assert ctx.get("t") == [1, [2, 3]]
    assert ctx.get("s") == [5]
    assert ctx.get("f") == ["x"]
    assert ctx.get("nan") is None
    assert ctx.get("inf") is None
    assert ctx.get("big") == 2**64 - 1
    assert ctx.get("small") == -(2**63)


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, [1, 2**70], {"x": -(2**64)}])
def test_int_out_of_range_is_rejected(value: Any) -> None:
    with pytest.raises(Exception, match="JSON number out of range") as info:
        Context({"n": value})
    assert isinstance(info.value, cloaca.ContextError)


@pytest.mark.parametrize(
    "value",
    [
        datetime.datetime(2026, 1, 1),
        decimal.Decimal("1.5"),
        object(),
        b"bytes",
        [1, object()],
        {"k": {"deeper": complex(1, 2)}},
    ],
)
def test_non_json_values_raise_type_error_naming_key_and_type(value: Any) -> None:
    ctx = Context()
    with pytest.raises(TypeError) as info:
        ctx.set("when", value)
    assert "'when'" in str(info.value)
    assert isinstance(info.value, cloaca.ContextError)
    assert "when" not in ctx


def test_nested_non_str_dict_key_is_type_error() -> None:
    with pytest.raises(TypeError) as info:
        Context({"outer": {1: "x"}})
    assert "'outer'" in str(info.value)


def test_cyclic_value_is_rejected() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError) as info:
        Context({"c": cyclic})
    assert "'c'" in str(info.value)


def test_subclasses_are_stored_as_plain_types() -> None:
    class S(str):
        pass

    class I(int):  # noqa: E742 - a name as short as the type it extends
        pass

    ctx = Context({"s": S("x"), "i": I(3), "d": OrderedDict(a=1), S("k"): True})
    assert type(ctx.get("s")) is str
    assert type(ctx.get("i")) is int
    assert type(ctx.get("d")) is dict
    assert ctx.get("k") is True


def test_insertion_order_is_preserved() -> None:
    ctx = Context({"z": 1, "a": 2})
    ctx.set("m", 3)
    assert list(ctx.to_dict()) == ["z", "a", "m"]


def test_codec_helpers() -> None:
    data = {"a": [1, {"b": "é"}]}
    text = encode_context_data(data)
    assert text == '{"a":[1,{"b":"é"}]}'
    decoded = decode_context_data(text)
    assert decoded == data
    assert decode_context_data(text.encode()) == data
    assert decode_context_data(text) is not decode_context_data(text)
    owned = decode_context_data(text)
    ctx = Context._from_owned(owned)
    assert ctx._data is owned
    assert ctx.to_json() == text


def test_validate_value_returns_storable_copy() -> None:
    original = {"a": (1, 2)}
    stored = validate_value("k", original)
    assert stored == {"a": [1, 2]}
    assert stored is not original
    assert validate_value("k", "s") == "s"
