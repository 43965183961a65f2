"""`RestartIntensity`: the sliding window of restarts that decides escalation.

OTP's rule: keep the restarts whose time lies within ``period`` of now (inclusive), add
the new one, and give up when more than ``intensity`` remain. So ``intensity=3`` allows
three restarts in any window of ``period`` seconds and escalates on the fourth;
``intensity=0`` escalates on the first. Times come from the caller (read from the
`Clock`), so the class needs no event loop and is driven directly by property-based
tests.
"""

from __future__ import annotations

from collections import deque

__all__ = ("RestartIntensity",)


class RestartIntensity:
    """A restart budget over a sliding time window.

    Args:
        intensity: Restarts allowed within the window.
        period: Window length, in seconds.
    """

    __slots__ = ("_times", "intensity", "period")

    def __init__(self, intensity: int, period: float) -> None:
        if intensity < 0:
            raise ValueError(f"intensity must be >= 0, not {intensity!r}")
        if not period > 0:
            raise ValueError(f"period must be > 0, not {period!r}")
        self.intensity = intensity
        self.period = period
        self._times: deque[float] = deque()

    def _expire(self, now: float) -> None:
        threshold = now - self.period
        times = self._times
        while times and times[0] < threshold:
            times.popleft()

    def record(self, now: float) -> bool:
        """Count a restart at ``now``.

        Args:
            now: The current monotonic time; calls must not go back in time.

        Returns:
            True if the restart is within budget, False if it exceeds the intensity
            (the supervisor must escalate).
        """
        self._expire(now)
        self._times.append(now)
        return len(self._times) <= self.intensity

    def count(self, now: float) -> int:
        """Return how many restarts lie within the window ending at ``now``."""
        self._expire(now)
        return len(self._times)

    def reset(self) -> None:
        """Forget every recorded restart."""
        self._times.clear()
