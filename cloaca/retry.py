"""Retry policies, backoff strategies and retry conditions (API.md 3.15, 4.7).

Pure value objects (API.md 3.15) with the arithmetic of API.md 4.7: a task is retried
after attempt *n* iff ``n < max_attempts`` and its condition matches the error text; the
delay is fixed, linear or exponential in whole milliseconds, capped, then jittered by a
factor in [0.75, 1.25]. ``@cloaca.task`` builds a policy from its ``retry_*`` keywords
through :func:`policy_from_keywords`, or takes a ``retry_policy=`` object (section 0
item 6). None of the four classes is user-constructible; instances come from static
factories.
"""

from __future__ import annotations

import math
import random
from decimal import Decimal
from typing import Final, NoReturn

from cloaca import texts
from cloaca.errors import (
    ConfigurationOverflowError,
    ConfigurationTypeError,
    ConfigurationValueError,
    TaskOverflowError,
    TaskTypeError,
    TaskValidationError,
)

__all__ = [
    "BackoffStrategy",
    "RetryCondition",
    "RetryPolicy",
    "RetryPolicyBuilder",
    "policy_from_keywords",
]

_NS_PER_MS: Final = 1_000_000
_NS_PER_S: Final = 1_000_000_000
_U32_MAX: Final = 2**32 - 1
_U64_MAX: Final = 2**64 - 1
_FIXED: Final = "fixed"
_LINEAR: Final = "linear"
_EXPONENTIAL: Final = "exponential"


def _fmt_number(value: float) -> str:
    """Format like the reference: no ``.0`` when integral, never an exponent."""
    if math.isfinite(value) and value == int(value):
        return str(int(value))
    text = repr(value)
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    return text


def _not_constructible(name: str) -> NoReturn:
    raise ConfigurationTypeError(texts.NOT_CONSTRUCTIBLE.format(name=name))


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationTypeError(
            texts.RETRY_ARGUMENT_TYPE.format(
                name=name, expected="a number", type=type(value).__name__
            )
        )
    return float(value)


def _seconds_to_ns(name: str, value: object) -> int:
    seconds = _number(name, value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigurationValueError(
            texts.RETRY_NEGATIVE_DELAY.format(name=name, value=value)
        )
    # round(): 0.57 s must be 570 ms, not 569.999... truncated.
    return round(seconds * _NS_PER_S)


class BackoffStrategy:
    """How the delay between attempts grows: fixed, linear or exponential."""

    __slots__ = ("_base", "_kind", "_multiplier")

    _kind: str
    _base: float
    _multiplier: float

    def __init__(self) -> None:
        _not_constructible("BackoffStrategy")

    @classmethod
    def _make(cls, kind: str, base: float, multiplier: float) -> BackoffStrategy:
        strategy = cls.__new__(cls)
        strategy._kind = kind
        strategy._base = base
        strategy._multiplier = multiplier
        return strategy

    @staticmethod
    def fixed() -> BackoffStrategy:
        """Every retry waits the initial delay."""
        return BackoffStrategy._make(_FIXED, 1.0, 1.0)

    @staticmethod
    def linear(multiplier: float) -> BackoffStrategy:
        """Retry *n* waits ``initial * n * multiplier``."""
        return BackoffStrategy._make(_LINEAR, 1.0, _number("multiplier", multiplier))

    @staticmethod
    def exponential(base: float, multiplier: float | None = None) -> BackoffStrategy:
        """Retry *n* waits ``initial * multiplier * base**(n-1)`` (multiplier: 1)."""
        m = 1.0 if multiplier is None else _number("multiplier", multiplier)
        return BackoffStrategy._make(_EXPONENTIAL, _number("base", base), m)

    def _base_ms(self, initial_ms: int, attempt: int) -> float:
        if self._kind == _FIXED:
            return float(initial_ms)
        if self._kind == _LINEAR:
            return initial_ms * attempt * self._multiplier
        try:
            factor = self._base ** (attempt - 1)
        except OverflowError:
            factor = math.inf
        return initial_ms * self._multiplier * factor

    def _key(self) -> tuple[str, float, float]:
        return (self._kind, self._base, self._multiplier)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BackoffStrategy) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        if self._kind == _FIXED:
            return "BackoffStrategy.Fixed"
        if self._kind == _LINEAR:
            return f"BackoffStrategy.Linear(multiplier={_fmt_number(self._multiplier)})"
        return (
            f"BackoffStrategy.Exponential(base={_fmt_number(self._base)}, "
            f"multiplier={_fmt_number(self._multiplier)})"
        )


class RetryCondition:
    """Which errors may be retried: never, transient ones, all, or matching patterns."""

    __slots__ = ("_kind", "_patterns")

    _kind: str
    _patterns: tuple[str, ...]

    def __init__(self) -> None:
        _not_constructible("RetryCondition")

    @classmethod
    def _make(cls, kind: str, patterns: tuple[str, ...] = ()) -> RetryCondition:
        condition = cls.__new__(cls)
        condition._kind = kind
        condition._patterns = patterns
        return condition

    @staticmethod
    def never() -> RetryCondition:
        """No error is retried."""
        return RetryCondition._make("never")

    @staticmethod
    def transient_only() -> RetryCondition:
        """Only timeouts and errors whose text names a transient cause (API.md 4.7)."""
        return RetryCondition._make("transient")

    @staticmethod
    def all_errors() -> RetryCondition:
        """Every error is retried (the default)."""
        return RetryCondition._make("all")

    @staticmethod
    def error_pattern(patterns: list[str]) -> RetryCondition:
        """Errors whose text contains one of ``patterns`` (case-insensitive)."""
        if not isinstance(patterns, list | tuple):
            raise ConfigurationTypeError(
                texts.RETRY_ARGUMENT_TYPE.format(
                    name="patterns",
                    expected="a list of str",
                    type=type(patterns).__name__,
                )
            )
        for item in patterns:
            if not isinstance(item, str):
                raise ConfigurationTypeError(
                    texts.RETRY_ARGUMENT_TYPE.format(
                        name="patterns item", expected="str", type=type(item).__name__
                    )
                )
        return RetryCondition._make("pattern", tuple(patterns))

    def matches(self, error: str) -> bool:
        """Whether an attempt that failed with error text ``error`` may be retried."""
        if self._kind == "all":
            return True
        if self._kind == "never":
            return False
        text = error.lower()
        needles = (
            texts.TRANSIENT_ERROR_KEYWORDS
            if self._kind == "transient"
            else self._patterns
        )
        return any(needle.lower() in text for needle in needles)

    def _key(self) -> tuple[str, tuple[str, ...]]:
        return (self._kind, self._patterns)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RetryCondition) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        if self._kind == "never":
            return "RetryCondition.Never"
        if self._kind == "transient":
            return "RetryCondition.TransientOnly"
        if self._kind == "all":
            return "RetryCondition.AllErrors"
        quoted = ", ".join(
            '"' + p.replace("\\", "\\\\").replace('"', '\\"') + '"'
            for p in self._patterns
        )
        return f"RetryCondition.ErrorPattern(patterns=[{quoted}])"


class RetryPolicy:
    """How often and how soon a failed task is attempted again (API.md 3.15, 4.7).

    Obtain one from :meth:`default` or :meth:`builder`; pass it to
    ``@cloaca.task(retry_policy=...)``.
    """

    __slots__ = (
        "_backoff",
        "_condition",
        "_initial_ns",
        "_jitter",
        "_max_attempts",
        "_max_ns",
    )

    _max_attempts: int
    _initial_ns: int
    _max_ns: int
    _jitter: bool
    _backoff: BackoffStrategy
    _condition: RetryCondition

    def __init__(self) -> None:
        _not_constructible("RetryPolicy")

    @classmethod
    def _make(
        cls,
        *,
        max_attempts: int = 3,
        initial_ns: int = 1000 * _NS_PER_MS,
        max_ns: int = 60000 * _NS_PER_MS,
        jitter: bool = True,
        backoff: BackoffStrategy | None = None,
        condition: RetryCondition | None = None,
    ) -> RetryPolicy:
        policy = cls.__new__(cls)
        policy._max_attempts = max_attempts
        policy._initial_ns = initial_ns
        policy._max_ns = max_ns
        policy._jitter = jitter
        policy._backoff = (
            BackoffStrategy.exponential(2.0) if backoff is None else backoff
        )
        policy._condition = (
            RetryCondition.all_errors() if condition is None else condition
        )
        return policy

    @staticmethod
    def default() -> RetryPolicy:
        """3 attempts, exponential backoff from 1 s up to 60 s, jitter, all errors."""
        return RetryPolicy._make()

    @staticmethod
    def builder() -> RetryPolicyBuilder:
        """Return a builder starting from :meth:`default`."""
        return RetryPolicyBuilder._wrap(RetryPolicy._make())

    @property
    def max_attempts(self) -> int:
        """Maximum total number of attempts, the first included."""
        return self._max_attempts

    @property
    def initial_delay(self) -> float:
        """Initial delay in seconds."""
        return self._initial_ns / _NS_PER_S

    @property
    def max_delay(self) -> float:
        """Cap on the computed delay in seconds (applied before jitter)."""
        return self._max_ns / _NS_PER_S

    @property
    def with_jitter(self) -> bool:
        """Whether delays are multiplied by a random factor in [0.75, 1.25]."""
        return self._jitter

    @property
    def backoff_strategy(self) -> BackoffStrategy:
        """The backoff strategy (cloaca extension; the reference has no getter)."""
        return self._backoff

    @property
    def retry_condition(self) -> RetryCondition:
        """The retry condition (cloaca extension; the reference has no getter)."""
        return self._condition

    def should_retry(self, attempt: int, _error_type: str) -> bool:
        """Whether attempt ``attempt`` (from 1) failing with ``_error_type`` is retried.

        Args:
            attempt: The number of the attempt that failed.
            _error_type: The attempt's error text (API.md 4.4); the retry condition is
                matched against it (section 0 item 6).
        """
        return attempt < self._max_attempts and self._condition.matches(_error_type)

    def delay_ms(self, attempt: int, rng: random.Random | None = None) -> int:
        """The wait in whole milliseconds after attempt ``attempt`` failed (API.md 4.7).

        Args:
            attempt: The number of the attempt that failed (from 1).
            rng: Source of the jitter factor; the ``random`` module when omitted.
        """
        initial_ms = self._initial_ns // _NS_PER_MS
        cap_ms = self._max_ns // _NS_PER_MS
        base = self._backoff._base_ms(initial_ms, attempt)
        # The cap applies before jitter (4.7); NaN and negatives saturate to 0 as in
        # Rust.
        capped = 0 if not base > 0 else cap_ms if base >= cap_ms else int(base)
        if not self._jitter:
            return capped
        factor = (rng.uniform if rng is not None else random.uniform)(0.75, 1.25)
        return int(capped * factor)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait in seconds after attempt ``attempt`` failed (whole milliseconds)."""
        return self.delay_ms(attempt, rng) / 1000

    def calculate_delay(self, attempt: int) -> float:
        """The wait in seconds after attempt ``attempt`` failed (random with jitter)."""
        return self.delay(attempt)

    def _key(self) -> tuple[object, ...]:
        return (
            self._max_attempts,
            self._initial_ns,
            self._max_ns,
            self._jitter,
            self._backoff,
            self._condition,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RetryPolicy) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(max_attempts={self._max_attempts}, "
            f"initial_delay={_fmt_number(self.initial_delay)}s, "
            f"max_delay={_fmt_number(self.max_delay)}s, "
            f"jitter={'true' if self._jitter else 'false'})"
        )


class RetryPolicyBuilder:
    """Immutable builder of a :class:`RetryPolicy`: each method returns a new one."""

    __slots__ = ("_policy",)

    _policy: RetryPolicy

    def __init__(self) -> None:
        _not_constructible("RetryPolicyBuilder")

    @classmethod
    def _wrap(cls, policy: RetryPolicy) -> RetryPolicyBuilder:
        builder = cls.__new__(cls)
        builder._policy = policy
        return builder

    def _with(self, **changes: object) -> RetryPolicyBuilder:
        p = self._policy
        fields: dict[str, object] = {
            "max_attempts": p._max_attempts,
            "initial_ns": p._initial_ns,
            "max_ns": p._max_ns,
            "jitter": p._jitter,
            "backoff": p._backoff,
            "condition": p._condition,
        }
        fields.update(changes)
        return RetryPolicyBuilder._wrap(RetryPolicy._make(**fields))  # type: ignore[arg-type]

    def max_attempts(self, attempts: int) -> RetryPolicyBuilder:
        """Set the maximum total number of attempts."""
        if isinstance(attempts, bool) or not isinstance(attempts, int):
            raise ConfigurationTypeError(
                texts.RETRY_ARGUMENT_TYPE.format(
                    name="attempts", expected="int", type=type(attempts).__name__
                )
            )
        if not 0 <= attempts <= _U32_MAX:
            raise ConfigurationOverflowError(
                texts.RETRY_ARGUMENT_RANGE.format(
                    name="attempts", limit=_U32_MAX, value=attempts
                )
            )
        return self._with(max_attempts=attempts)

    def initial_delay(self, delay_seconds: float) -> RetryPolicyBuilder:
        """Set the initial delay in seconds (``>= 0``)."""
        return self._with(initial_ns=_seconds_to_ns("delay_seconds", delay_seconds))

    def max_delay(self, delay_seconds: float) -> RetryPolicyBuilder:
        """Set the cap on the computed delay in seconds (``>= 0``)."""
        return self._with(max_ns=_seconds_to_ns("delay_seconds", delay_seconds))

    def backoff_strategy(self, strategy: BackoffStrategy) -> RetryPolicyBuilder:
        """Set the backoff strategy."""
        if not isinstance(strategy, BackoffStrategy):
            raise ConfigurationTypeError(
                texts.RETRY_ARGUMENT_TYPE.format(
                    name="strategy",
                    expected="BackoffStrategy",
                    type=type(strategy).__name__,
                )
            )
        return self._with(backoff=strategy)

    def retry_condition(self, condition: RetryCondition) -> RetryPolicyBuilder:
        """Set the retry condition."""
        if not isinstance(condition, RetryCondition):
            raise ConfigurationTypeError(
                texts.RETRY_ARGUMENT_TYPE.format(
                    name="condition",
                    expected="RetryCondition",
                    type=type(condition).__name__,
                )
            )
        return self._with(condition=condition)

    def with_jitter(self, jitter: bool) -> RetryPolicyBuilder:
        """Turn jitter on or off."""
        if not isinstance(jitter, bool):
            raise ConfigurationTypeError(
                texts.RETRY_ARGUMENT_TYPE.format(
                    name="jitter", expected="bool", type=type(jitter).__name__
                )
            )
        return self._with(jitter=jitter)

    def build(self) -> RetryPolicy:
        """Return the policy."""
        return self._policy

    def __repr__(self) -> str:
        return f"RetryPolicyBuilder({self._policy!r})"


def _kw_type(name: str, value: object, expected: str) -> NoReturn:
    raise TaskTypeError(
        texts.TASK_ARGUMENT_TYPE.format(
            name=name, expected=expected, type=type(value).__name__
        )
    )


def _kw_unsigned(name: str, value: object, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _kw_type(name, value, "int")
    if not 0 <= value <= limit:
        raise TaskOverflowError(
            texts.TASK_ARGUMENT_NEGATIVE.format(name=name, limit=limit, value=value)
        )
    return value


def policy_from_keywords(
    *,
    retry_attempts: int | None = None,
    retry_backoff: str | None = None,
    retry_delay_ms: int | None = None,
    retry_max_delay_ms: int | None = None,
    retry_condition: str | None = None,
    retry_jitter: bool | None = None,
) -> RetryPolicy:
    """Build a task's policy from ``@task``'s ``retry_*`` keywords (API.md 3.4, 4.7).

    Omitted keywords keep :meth:`RetryPolicy.default`'s values.

    Raises:
        TypeError: a keyword of the wrong type.
        OverflowError: a negative (or too large) count or delay.
        ValueError: an unknown ``retry_backoff`` / ``retry_condition`` string, listing
            the valid choices (section 0 item 6).
    """
    changes: dict[str, object] = {}
    if retry_attempts is not None:
        changes["max_attempts"] = _kw_unsigned(
            "retry_attempts", retry_attempts, _U32_MAX
        )
    if retry_backoff is not None:
        if not isinstance(retry_backoff, str):
            _kw_type("retry_backoff", retry_backoff, "str")
        if retry_backoff == _FIXED:
            changes["backoff"] = BackoffStrategy.fixed()
        elif retry_backoff == _LINEAR:
            changes["backoff"] = BackoffStrategy.linear(1.0)
        elif retry_backoff == _EXPONENTIAL:
            changes["backoff"] = BackoffStrategy.exponential(2.0, 1.0)
        else:
            raise TaskValidationError(
                texts.RETRY_BACKOFF_INVALID.format(value=retry_backoff)
            )
    if retry_delay_ms is not None:
        changes["initial_ns"] = (
            _kw_unsigned("retry_delay_ms", retry_delay_ms, _U64_MAX) * _NS_PER_MS
        )
    if retry_max_delay_ms is not None:
        changes["max_ns"] = (
            _kw_unsigned("retry_max_delay_ms", retry_max_delay_ms, _U64_MAX)
            * _NS_PER_MS
        )
    if retry_condition is not None:
        if not isinstance(retry_condition, str):
            _kw_type("retry_condition", retry_condition, "str")
        conditions = {
            "never": RetryCondition.never,
            "transient": RetryCondition.transient_only,
            "all": RetryCondition.all_errors,
        }
        if retry_condition not in conditions:
            raise TaskValidationError(
                texts.RETRY_CONDITION_INVALID.format(value=retry_condition)
            )
        changes["condition"] = conditions[retry_condition]()
    if retry_jitter is not None:
        if not isinstance(retry_jitter, bool):
            _kw_type("retry_jitter", retry_jitter, "bool")
        changes["jitter"] = retry_jitter
    if not changes:
        return RetryPolicy._make()
    return RetryPolicy.builder()._with(**changes).build()
