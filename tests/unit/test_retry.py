"""Retry value objects and arithmetic (API.md 3.15, 4.7, section 0 item 6)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, strategies as st

import cloaca
from cloaca import BackoffStrategy, RetryCondition, RetryPolicy, RetryPolicyBuilder
from cloaca.retry import policy_from_keywords


def no_jitter(**kw: object) -> RetryPolicy:
    return policy_from_keywords(retry_jitter=False, **kw)  # type: ignore[arg-type]


def waits(policy: RetryPolicy, count: int) -> list[int]:
    return [policy.delay_ms(n) for n in range(1, count + 1)]


def test_default_policy() -> None:
    p = RetryPolicy.default()
    assert p.max_attempts == 3
    assert p.initial_delay == 1.0
    assert p.max_delay == 60.0
    assert p.with_jitter is True
    assert (
        repr(p)
        == "RetryPolicy(max_attempts=3, initial_delay=1s, max_delay=60s, jitter=true)"
    )
    assert p.backoff_strategy == BackoffStrategy.exponential(2.0)
    assert p.retry_condition == RetryCondition.all_errors()


@pytest.mark.parametrize(
    "cls", [RetryPolicy, RetryPolicyBuilder, BackoffStrategy, RetryCondition]
)
def test_no_public_constructors(cls: type) -> None:
    with pytest.raises(TypeError):
        cls()


def test_examples_of_4_7() -> None:
    # default policy: up to 3 runs, waits 1 s then 2 s
    assert waits(no_jitter(), 2) == [1000, 2000]
    assert waits(
        no_jitter(retry_attempts=5, retry_backoff="exponential", retry_delay_ms=100), 4
    ) == [100, 200, 400, 800]
    assert waits(
        no_jitter(
            retry_attempts=4,
            retry_backoff="linear",
            retry_delay_ms=500,
            retry_max_delay_ms=1000,
        ),
        3,
    ) == [500, 1000, 1000]
    assert waits(no_jitter(retry_backoff="fixed", retry_delay_ms=250), 3) == [250] * 3


def test_retry_attempts_zero_and_one_mean_a_single_run() -> None:
    for n in (0, 1):
        p = policy_from_keywords(retry_attempts=n)
        assert p.max_attempts == n
        assert not p.should_retry(1, "boom")


def test_should_retry_honours_budget_and_condition() -> None:
    p = policy_from_keywords(retry_attempts=3)
    assert p.should_retry(1, "x")
    assert p.should_retry(2, "x")
    assert not p.should_retry(3, "x")
    never = policy_from_keywords(retry_condition="never")
    assert not never.should_retry(1, "x")


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        ("Python task execution failed: ConnectionError: ", True),
        ("Python task execution failed: ConnectionRefusedError: refused", True),
        ("Python task execution failed: TimeoutError: ", True),
        ("Task timeout after 5s", True),
        ("service UNAVAILABLE", True),
        ("Network down", True),
        ("a temporary glitch", True),
        ("Python task execution failed: ValueError: bad", False),
    ],
)
def test_transient_condition(error: str, transient: bool) -> None:
    p = policy_from_keywords(retry_condition="transient")
    assert p.should_retry(1, error) is transient
    assert RetryCondition.transient_only().matches(error) is transient


def test_error_pattern_condition_is_case_insensitive() -> None:
    cond = RetryCondition.error_pattern(["Rate Limit", "busy"])
    assert cond.matches("HTTP 429: rate limit exceeded")
    assert cond.matches("BUSY")
    assert not cond.matches("fatal")
    assert repr(cond) == 'RetryCondition.ErrorPattern(patterns=["Rate Limit", "busy"])'
    with pytest.raises(TypeError):
        RetryCondition.error_pattern("busy")  # type: ignore[arg-type]


def test_condition_and_strategy_reprs() -> None:
    assert repr(RetryCondition.never()) == "RetryCondition.Never"
    assert repr(RetryCondition.transient_only()) == "RetryCondition.TransientOnly"
    assert repr(RetryCondition.all_errors()) == "RetryCondition.AllErrors"
    assert repr(BackoffStrategy.fixed()) == "BackoffStrategy.Fixed"
    assert repr(BackoffStrategy.linear(1.0)) == "BackoffStrategy.Linear(multiplier=1)"
    assert repr(BackoffStrategy.linear(1.5)) == "BackoffStrategy.Linear(multiplier=1.5)"
    assert (
        repr(BackoffStrategy.exponential(2.0, None))
        == "BackoffStrategy.Exponential(base=2, multiplier=1)"
    )
    assert (
        repr(BackoffStrategy.exponential(1.5, 3))
        == "BackoffStrategy.Exponential(base=1.5, multiplier=3)"
    )


def test_builder_is_immutable_and_builds() -> None:
    base = RetryPolicy.builder()
    changed = (
        base.max_attempts(5)
        .initial_delay(0.5)
        .max_delay(10)
        .with_jitter(False)
        .backoff_strategy(BackoffStrategy.linear(2.0))
        .retry_condition(RetryCondition.never())
    )
    assert base.build() == RetryPolicy.default()
    p = changed.build()
    assert (p.max_attempts, p.initial_delay, p.max_delay, p.with_jitter) == (
        5,
        0.5,
        10.0,
        False,
    )
    assert repr(p) == (
        "RetryPolicy(max_attempts=5, initial_delay=0.5s, max_delay=10s, jitter=false)"
    )
    assert waits(p, 3) == [1000, 2000, 3000]
    assert not p.should_retry(1, "x")


def test_builder_rejects_bad_values() -> None:
    b = RetryPolicy.builder()
    with pytest.raises(ValueError):
        b.initial_delay(-1.0)
    with pytest.raises(ValueError):
        b.max_delay(math.inf)
    with pytest.raises(TypeError):
        b.max_attempts(2.5)  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        b.max_attempts(-1)
    with pytest.raises(TypeError):
        b.backoff_strategy("fixed")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        b.retry_condition("all")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        b.with_jitter(1)  # type: ignore[arg-type]


def test_delays_are_whole_milliseconds() -> None:
    p = RetryPolicy.builder().initial_delay(0.57).with_jitter(False).build()
    assert p.initial_delay == 0.57
    assert p.delay_ms(1) == 570
    sub = RetryPolicy.builder().initial_delay(0.0015).with_jitter(False).build()
    assert sub.delay_ms(1) == 1
    assert sub.delay(1) == 0.001
    assert sub.calculate_delay(1) == 0.001


def test_cap_applies_before_jitter() -> None:
    p = policy_from_keywords(retry_delay_ms=1000, retry_max_delay_ms=1500)
    rng = random.Random(7)
    for attempt in range(1, 30):
        ms = p.delay_ms(attempt, rng)
        base = min(1000 * 2 ** (attempt - 1), 1500)
        assert int(base * 0.75) <= ms <= int(base * 1.25)


def test_jitter_uses_the_given_rng() -> None:
    p = policy_from_keywords(retry_delay_ms=1000, retry_backoff="fixed")
    first = [p.delay_ms(1, random.Random(3)) for _ in range(3)]
    assert len(set(first)) == 1
    factor = random.Random(3).uniform(0.75, 1.25)
    assert first[0] == int(1000 * factor)


def test_huge_attempts_saturate_at_the_cap() -> None:
    p = no_jitter(retry_max_delay_ms=60000)
    assert p.delay_ms(5000) == 60000
    assert no_jitter(retry_backoff="linear").delay_ms(-3) == 0


@given(
    attempt=st.integers(min_value=1, max_value=200),
    initial=st.integers(min_value=0, max_value=10**7),
    cap=st.integers(min_value=0, max_value=10**8),
    kind=st.sampled_from(["fixed", "linear", "exponential"]),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_delay_bounds(
    attempt: int, initial: int, cap: int, kind: str, seed: int
) -> None:
    p = policy_from_keywords(
        retry_backoff=kind, retry_delay_ms=initial, retry_max_delay_ms=cap
    )
    ms = p.delay_ms(attempt, random.Random(seed))
    assert 0 <= ms <= int(cap * 1.25)


def test_keyword_validation() -> None:
    with pytest.raises(ValueError) as info:
        policy_from_keywords(retry_backoff="exponentail")
    assert "'fixed', 'linear', 'exponential'" in str(info.value)
    assert isinstance(info.value, cloaca.TaskValidationError)
    with pytest.raises(ValueError) as info:
        policy_from_keywords(retry_condition="sometimes")
    assert "'never', 'transient', 'all'" in str(info.value)
    with pytest.raises(OverflowError):
        policy_from_keywords(retry_attempts=-1)
    with pytest.raises(OverflowError):
        policy_from_keywords(retry_delay_ms=-5)
    with pytest.raises(TypeError):
        policy_from_keywords(retry_attempts=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        policy_from_keywords(retry_jitter="yes")  # type: ignore[arg-type]


def test_policy_equality() -> None:
    assert RetryPolicy.default() == RetryPolicy.default()
    assert hash(RetryPolicy.default()) == hash(RetryPolicy.default())
    assert RetryPolicy.default() != no_jitter()
