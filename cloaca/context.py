"""``Context``: the map of JSON values that flows through a workflow (API.md 3.3).

A context holds its values **by value**: whatever goes in is validated and copied
(:func:`validate_value`), whatever comes out is a fresh copy, so no caller can reach the
stored objects. Values are JSON values as API.md 1.5 defines them; tuples, sets and
frozensets are stored as lists, non-finite floats as ``None``. The JSON text is
msgspec's compact encoding with non-ASCII characters unescaped, the form SCHEMA.md 2.1
stores.

The runtime moves contexts as JSON text: :func:`encode_context_data` /
:func:`decode_context_data` are that codec, and :meth:`Context._from_owned` wraps a
freshly decoded dict without copying or re-validating it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Final

import msgspec

from cloaca import texts
from cloaca.errors import ContextKeyError, ContextTypeError, ContextValueError

__all__ = [
    "Context",
    "copy_value",
    "decode_context_data",
    "encode_context_data",
    "validate_value",
]

_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1
_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder(dict[str, Any])
_MISSING: Final = object()


def _invalid(key: str, value: object) -> ContextTypeError:
    return ContextTypeError(
        texts.CONTEXT_VALUE_NOT_JSON.format(key=key, type=type(value).__name__)
    )


def _check(key: str, value: Any) -> Any:
    """Return a validated private copy of ``value``; exact JSON types go first."""
    cls = type(value)
    if cls is str or cls is bool or value is None:
        return value
    if cls is int:
        if _INT_MIN <= value <= _INT_MAX:
            return value
        raise ContextValueError(
            texts.CONTEXT_NUMBER_OUT_OF_RANGE.format(key=key, value=value)
        )
    if cls is float:
        # 1.5: the reference stores nan/inf as null.
        return value if math.isfinite(value) else None
    if cls is dict:
        out: dict[str, Any] = {}
        for k, v in value.items():
            if type(k) is not str:
                if not isinstance(k, str):
                    raise ContextTypeError(
                        texts.CONTEXT_DICT_KEY_NOT_STR.format(
                            type=type(k).__name__, key=key
                        )
                    )
                k = str.__str__(k)
            out[k] = _check(key, v)
        return out
    if cls is list or cls is tuple:
        return [_check(key, v) for v in value]
    return _check_subclass(key, value)


def _check_subclass(key: str, value: Any) -> Any:
    """Subclasses of the JSON types are stored as their plain base type."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return _check(key, int(value))
    if isinstance(value, float):
        return _check(key, float(value))
    if isinstance(value, dict):
        return _check(key, dict(value))
    if isinstance(value, list | tuple | set | frozenset):
        return [_check(key, v) for v in value]
    raise _invalid(key, value)


def validate_value(key: str, value: Any) -> Any:
    """Check that ``value`` may be stored under ``key`` and return the object to store.

    Args:
        key: The context key, named in error messages.
        value: Any Python object.

    Returns:
        A private copy made of plain JSON types (tuples and sets become lists,
        non-finite
        floats ``None``, subclasses their base type). Scalars are returned as they are.

    Raises:
        TypeError: (``ContextError``) a value of a type a context cannot hold, or a dict
            key that is not ``str``; the message names the key and the type.
        ValueError: (``ContextError``) an ``int`` outside -2**63 .. 2**64-1 (``JSON
            number out of range``), or a cyclic value.
    """
    try:
        return _check(key, value)
    except RecursionError:
        raise ContextValueError(texts.CONTEXT_VALUE_TOO_DEEP.format(key=key)) from None


def copy_value(value: Any) -> Any:
    """Copy a validated value: containers are rebuilt, immutable scalars shared."""
    cls = type(value)
    if cls is dict:
        return {k: copy_value(v) for k, v in value.items()}
    if cls is list:
        return [copy_value(v) for v in value]
    return value


def encode_context_data(data: Mapping[str, Any]) -> str:
    """Encode context data as compact JSON object text, non-ASCII characters unescaped.

    Args:
        data: Validated context data (as held by a :class:`Context`).

    Returns:
        The text :meth:`Context.to_json` returns, e.g. ``{"a":1,"b":[1,2]}``.
    """
    return _ENCODER.encode(data).decode()


def decode_context_data(text: str | bytes) -> dict[str, Any]:
    """Decode JSON object text into fresh context data (no validation beyond JSON).

    Args:
        text: A JSON object, as produced by :func:`encode_context_data`.

    Returns:
        A new dict the caller owns.

    Raises:
        msgspec.DecodeError: the text is not JSON.
        msgspec.ValidationError: the top level is not an object, or a number is out of
            range.
    """
    return _DECODER.decode(text)


def _check_key(key: object) -> str:
    if type(key) is str:
        return key
    if isinstance(key, str):
        return str.__str__(key)
    raise ContextTypeError(texts.CONTEXT_KEY_NOT_STR.format(type=type(key).__name__))


def _checked_items(data: object) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ContextTypeError(
            texts.CONTEXT_DATA_NOT_DICT.format(type=type(data).__name__)
        )
    checked: dict[str, Any] = {}
    for key, value in data.items():
        k = _check_key(key)
        checked[k] = validate_value(k, value)
    return checked


class Context:
    """A mutable string-keyed map of JSON values that flows through a workflow.

    Values are held by value: storing copies the given object and reading returns a
    fresh copy, so mutating an object obtained from :meth:`get` changes nothing until it
    is stored back with :meth:`set`. Keys must be ``str``. A context is not iterable and
    compares by identity (API.md 3.3).

    Args:
        data: Initial entries (copied); ``None`` starts empty.

    Raises:
        TypeError: ``data`` is not a dict, has a non-``str`` key or a value that is not
            JSON-representable.
    """

    __slots__ = ("_data",)

    _data: dict[str, Any]

    # 3.3: iteration is not provided; without this the legacy sequence protocol would
    # try ctx[0], ctx[1], ...
    __iter__: ClassVar[None] = None

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self._data = {} if data is None else _checked_items(data)

    @classmethod
    def _from_owned(cls, data: dict[str, Any]) -> Context:
        """Wrap a dict the caller gives up (freshly decoded): no copy, no validation."""
        ctx = cls.__new__(cls)
        ctx._data = data
        return ctx

    def get(self, key: str, default: Any = None) -> Any:
        """Return a copy of the value stored under ``key``.

        Args:
            key: The key.
            default: Returned itself (not a copy) when the key is absent. A stored
                ``None`` is returned as ``None``.
        """
        value = self._data.get(_check_key(key), _MISSING)
        return default if value is _MISSING else copy_value(value)

    def set(self, key: str, value: Any) -> None:
        """Insert or overwrite ``key`` with a copy of ``value``."""
        k = _check_key(key)
        self._data[k] = validate_value(k, value)

    def insert(self, key: str, value: Any) -> None:
        """Insert a new key.

        Raises:
            ValueError: the key exists (``Key already exists: Key already exists:
                <key>``).
        """
        k = _check_key(key)
        if k in self._data:
            raise ContextValueError(texts.CONTEXT_KEY_EXISTS.format(key=k))
        self._data[k] = validate_value(k, value)

    def update(self, key: str, value: Any) -> None:
        """Overwrite an existing key.

        Raises:
            KeyError: the key is absent (``Key not found: Key not found: <key>``).
        """
        k = _check_key(key)
        if k not in self._data:
            raise ContextKeyError(texts.CONTEXT_UPDATE_KEY_NOT_FOUND.format(key=k))
        self._data[k] = validate_value(k, value)

    def remove(self, key: str) -> Any | None:
        """Remove ``key`` and return its value, or ``None`` if it was absent."""
        return self._data.pop(_check_key(key), None)

    def to_dict(self) -> dict[str, Any]:
        """Return a new dict with copies of all entries."""
        return copy_value(self._data)  # type: ignore[no-any-return]

    def update_from_dict(self, data: dict[str, Any]) -> None:
        """Insert or overwrite every item of ``data`` (like :meth:`set`), all or none.

        Raises:
            TypeError: ``data`` is not a dict, or has an invalid key or value.
        """
        self._data.update(_checked_items(data))

    def to_json(self) -> str:
        """Return the entries as compact JSON object text (``{"a":1,"b":[1,2]}``)."""
        return encode_context_data(self._data)

    @staticmethod
    def from_json(json_str: str) -> Context:
        """Parse a JSON object into a new context.

        Args:
            json_str: JSON object text.

        Raises:
            ValueError: invalid JSON or a top level that is not an object (message
                begins ``Failed to deserialize from JSON:``).
        """
        if not isinstance(json_str, str | bytes):
            raise ContextTypeError(
                texts.ARGUMENT_TYPE.format(
                    owner="Context.from_json()",
                    name="json_str",
                    expected="str",
                    type=type(json_str).__name__,
                )
            )
        try:
            data = decode_context_data(json_str)
            for key, value in data.items():
                # Decoding accepts ints beyond 1.5's range; storing would not.
                data[key] = validate_value(key, value)
        except (msgspec.DecodeError, ContextValueError) as exc:
            raise ContextValueError(
                texts.CONTEXT_JSON_DESERIALIZE_FAILED.format(reason=exc)
            ) from exc
        return Context._from_owned(data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return _check_key(key) in self._data

    def __getitem__(self, key: str) -> Any:
        k = _check_key(key)
        value = self._data.get(k)
        if value is None:
            # 3.3: a stored None reads as missing through [] (reference quirk, kept).
            raise ContextKeyError(texts.CONTEXT_KEY_NOT_FOUND.format(key=k))
        return copy_value(value)

    def __setitem__(self, key: str, value: Any) -> None:
        self.set(key, value)

    def __delitem__(self, key: str) -> None:
        k = _check_key(key)
        if k not in self._data:
            raise ContextKeyError(texts.CONTEXT_KEY_NOT_FOUND.format(key=k))
        del self._data[k]

    def __repr__(self) -> str:
        return "Context(" + self.to_json() + ")"
