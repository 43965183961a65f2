"""Cron expressions in IANA time zones: next fire times and catch-up (API.md 4.12).

The only module that imports croniter. A :class:`CronSchedule` is a parsed
expression plus its zone; everything here is pure given the times passed in, so
the cron actor and the tests drive it with any clock. Expressions are matched
against the *local wall-clock time* of the schedule's zone, and an occurrence is
every instant whose local time matches, which makes daylight-saving transitions
exact: a local time that does not exist (the hour skipped in spring) never fires,
and one that exists twice (the hour repeated in autumn) fires at both instants,
so ``*/15 * * * *`` keeps a 15-minute cadence in real time through the change.
Ticks are whole seconds in UTC, as Cloacina stores them (SCHEMA.md 6).
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Final

from croniter import CroniterError, croniter

__all__ = ("CronError", "CronSchedule", "due_ticks", "floor_second", "tick_text")

_ALIASES: Final = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
# croniter's random (R) and hashed (H) fields are not cron: a schedule must be a
# pure function of its text. Month and day names containing those letters (THU,
# MAR) are words, hence the letter guards.
_NONDETERMINISTIC: Final = re.compile(r"(?<![A-Za-z])[RrHh](?![A-Za-z])")
# Wider than any UTC-offset change a zone has ever made (at most 2 h so far); the
# search for the next occurrence looks this far around a transition.
_TRANSITION_WINDOW: Final = timedelta(hours=3)


class CronError(ValueError):
    """An invalid cron expression or time zone; the message names the bad value."""


class CronSchedule:
    """A validated cron expression interpreted in an IANA time zone.

    Args:
        expression: 5 fields (minute hour day-of-month month day-of-week), 6 fields
            with a leading seconds field, or one of ``@yearly``, ``@monthly``,
            ``@weekly``, ``@daily``, ``@hourly``. Lists, ranges, steps and month/day
            names are accepted; day-of-month and day-of-week combine as in standard
            cron (either matches when both are restricted).
        timezone: An IANA zone name such as ``UTC`` or ``America/New_York``.

    Raises:
        CronError: The expression or the zone is invalid (the message names it).
    """

    __slots__ = ("_seconds", "expression", "timezone", "zone")

    def __init__(self, expression: str, timezone: str) -> None:
        self.expression = expression
        self.timezone = timezone
        self.zone = _zone(timezone)
        fields = expression.split()
        if len(fields) == 1 and fields[0].lower() in _ALIASES:
            self._seconds = False
        elif len(fields) in (5, 6):
            self._seconds = len(fields) == 6
        else:
            raise CronError(
                f"invalid cron expression {expression!r}: expected 5 fields, or 6 "
                f"with a leading seconds field, not {len(fields)}"
            )
        if _NONDETERMINISTIC.search(expression):
            raise CronError(
                f"invalid cron expression {expression!r}: random (R) and hashed (H) "
                "fields are not supported"
            )
        try:
            self._iterate(datetime(2000, 1, 1))
        except (CroniterError, ValueError, KeyError) as exc:
            raise CronError(f"invalid cron expression {expression!r}: {exc}") from exc

    def __repr__(self) -> str:
        return f"CronSchedule({self.expression!r}, {self.timezone!r})"

    def _iterate(self, start: datetime) -> croniter:
        """A croniter over naive local wall times strictly after ``start``."""
        return croniter(
            self.expression,
            start,
            ret_type=datetime,
            day_or=True,
            second_at_beginning=self._seconds,
        )

    def _local_matches(self, start: datetime) -> Iterator[datetime]:
        """Naive local wall times that match, strictly after ``start``, ascending."""
        it = self._iterate(start)
        while True:
            try:
                value: datetime = it.get_next(datetime)
            except CroniterError as exc:
                raise CronError(
                    f"cron expression {self.expression!r} never fires after "
                    f"{start.isoformat()}: {exc}"
                ) from exc
            yield value

    def _instants(self, local: datetime) -> list[datetime]:
        """The UTC instants whose wall time in the zone is ``local`` (0, 1 or 2)."""
        zone = self.zone
        first = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
        second = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
        if first == second:
            return [first]
        # Either repeated (both round-trip) or skipped (neither does).
        return [
            instant
            for instant in (first, second)
            if instant.astimezone(zone).replace(tzinfo=None) == local
        ]

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after ``moment``.

        Args:
            moment: An aware time.

        Returns:
            An aware UTC time with no fraction of a second.

        Raises:
            CronError: The expression never fires again (e.g. ``0 0 30 2 *``).
        """
        moment = moment.astimezone(UTC)
        local = moment.astimezone(self.zone)
        naive = local.replace(tzinfo=None)
        if len(self._instants(naive)) == 1:
            # Away from a repeated hour the first local match is the answer,
            # unless it falls into a skipped or repeated hour itself.
            candidate = next(self._local_matches(naive))
            instants = self._instants(candidate)
            if len(instants) == 1:
                return instants[0]
        return self._next_near_transition(moment, naive)

    def _next_near_transition(self, moment: datetime, naive: datetime) -> datetime:
        # Local time is not monotonic in real time around a transition: scan local
        # matches from before it and keep the earliest instant after ``moment``.
        # A match more than the window past ``naive`` maps to instants after every
        # earlier match's, so the scan can stop there.
        best: datetime | None = None
        horizon = naive + _TRANSITION_WINDOW
        for local in self._local_matches(naive - _TRANSITION_WINDOW):
            for instant in self._instants(local):
                if instant > moment and (best is None or instant < best):
                    best = instant
            if local > horizon and best is not None:
                return best
        raise AssertionError("unreachable: the local matches never end")

    def occurrences(
        self, first: datetime, until: datetime, limit: int
    ) -> list[datetime]:
        """Occurrences from ``first`` (included) up to ``until`` (included).

        Args:
            first: A tick of this schedule (included as is when not after ``until``).
            until: The last time to include.
            limit: At most this many ticks, the earliest ones.

        Returns:
            Ascending aware UTC ticks.
        """
        ticks: list[datetime] = []
        tick = first.astimezone(UTC)
        while tick <= until and len(ticks) < limit:
            ticks.append(tick)
            tick = self.next_after(tick)
        return ticks


def _zone(name: str) -> zoneinfo.ZoneInfo:
    if not name or name != name.strip():
        raise CronError(f"unknown timezone {name!r}")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise CronError(f"unknown timezone {name!r}") from exc


def due_ticks(
    schedule: CronSchedule,
    policy: str,
    next_run_at: datetime,
    now: datetime,
    max_catchup: int,
) -> list[datetime]:
    """The ticks one claim of a due schedule fires (API.md 4.12).

    Args:
        schedule: The parsed schedule.
        policy: ``skip`` (and its synonym ``run_once``): the stored tick, once,
            however many were missed. ``run_all``: every tick from the stored one
            up to ``now``, the earliest ``max_catchup`` of them.
        next_run_at: The stored next tick (due: not after ``now``).
        now: The time of the claim.
        max_catchup: ``cron_max_catchup_executions`` (at least one tick fires).

    Returns:
        Ascending ticks; empty when the schedule is not due.
    """
    if next_run_at > now:
        return []
    if policy != "run_all":
        return [next_run_at]
    return schedule.occurrences(next_run_at, now, max(1, max_catchup))


def floor_second(moment: datetime) -> datetime:
    """``moment`` without its fraction of a second (ticks are whole seconds)."""
    return moment.replace(microsecond=0)


def tick_text(tick: datetime) -> str:
    """A tick as ``scheduled_time`` text (RFC 3339 UTC, ``…T20:26:38+00:00``)."""
    return tick.astimezone(UTC).replace(microsecond=0).isoformat()
