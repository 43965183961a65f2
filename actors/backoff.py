"""`Backoff`: pure exponential delays with optional jitter (the stamina formula).

``delay(attempt) = min(max, initial * multiplier ** (attempt - 1)) + uniform(0,
jitter)``, with the random source injected so tests can pin it.
"""

from __future__ import annotations

import random

import msgspec

__all__ = ("Backoff",)


class Backoff(msgspec.Struct, frozen=True, kw_only=True):
    """Exponential backoff.

    Attributes:
        initial: Delay before the first retry, in seconds.
        max: Cap of the exponential part, in seconds.
        multiplier: Growth factor per attempt.
        jitter: Upper bound of the random amount added, in seconds.
    """

    initial: float = 0.1
    max: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not (self.initial >= 0 and self.max >= 0 and self.jitter >= 0):
            raise ValueError("backoff initial, max and jitter must be >= 0")
        if not self.multiplier >= 1:
            raise ValueError(
                f"backoff multiplier must be >= 1, not {self.multiplier!r}"
            )

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Return the delay before retry number ``attempt``.

        Args:
            attempt: 1 for the first retry.
            rng: Random source for the jitter (the module's when None).

        Raises:
            ValueError: If ``attempt`` is below 1.
        """
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1, not {attempt!r}")
        exponent = attempt - 1
        try:
            base = self.initial * self.multiplier**exponent
        except OverflowError:
            base = self.max
        value = min(self.max, base)
        if self.jitter:
            value += (rng or random).uniform(0.0, self.jitter)
        return value
