"""Values in the SQLite store's columns (SCHEMA.md 2.1), and its rows read back.

Cloacina 0.3.1 fixes the encodings, so a file it wrote and one we wrote read the
same: UUIDs as 16-byte blobs, timestamps as
``dt.astimezone(timezone.utc).isoformat()`` text (read back with 0-9 fraction
digits, truncated to microseconds), JSON as compact text. The store's writes
(``sqlite_apply``), its reads (``sqlite``) and the schedule tables
(``sqlite_schedules``) encode times through this one module, so every writer
produces the same text for the same instant (a tick's ``UNIQUE`` depends on it).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

from cloaca.storage.errors import StorageError
from cloaca.storage.protocol import ExecutionRow, TaskRow

__all__ = (
    "decode_timestamp",
    "decode_uuid",
    "encode_timestamp",
    "execution_row",
    "task_row",
)

_UTC: Final = UTC
_TIMESTAMP: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
    r"(Z|[+-]\d{2}:?\d{2})?\Z"
)


def encode_timestamp(value: datetime) -> str:
    """SCHEMA.md 2.1 text: UTC RFC 3339 with ``+00:00``, no forced fraction.

    Args:
        value: A timezone-aware time.

    Returns:
        For example ``2026-12-04T14:00:00+00:00`` or ``…:32.785487+00:00``.

    Raises:
        StorageError: ``value`` is naive (its zone would be a guess).
    """
    if value.tzinfo is None:
        raise StorageError(f"refusing to store naive datetime {value.isoformat()}")
    return value.astimezone(_UTC).isoformat()


def decode_timestamp(text: str) -> datetime:
    """Read a stored timestamp as an aware UTC ``datetime``.

    Args:
        text: RFC 3339 text with 0-9 fraction digits (0.3.1 writes 9); a missing
            offset (Diesel's ``run_on``) is read as UTC.

    Returns:
        The time, truncated (never rounded) to microseconds.

    Raises:
        StorageError: The text is not a timestamp.
    """
    match = _TIMESTAMP.match(text)
    if match is None:
        raise StorageError(f"unreadable timestamp {text!r} in the database")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micro = int((fraction or "")[:6].ljust(6, "0"))
    zone = _UTC
    if offset not in (None, "Z", "+00:00"):
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        zone = timezone(
            sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        )
    moment = datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), micro
    )
    return moment.replace(tzinfo=zone).astimezone(_UTC)


def _decode_optional_timestamp(text: str | None) -> datetime | None:
    return None if text is None else decode_timestamp(text)


def decode_uuid(value: bytes | str) -> uuid.UUID:
    """Read a stored id: 0.3.1's 16-byte blob, or the same id written as text."""
    if isinstance(value, bytes) and len(value) == 16:
        return uuid.UUID(bytes=value)
    # Not 0.3.1's encoding, but an id written as text is still an id.
    return uuid.UUID(value.decode() if isinstance(value, bytes) else value)


def task_row(row: Sequence[Any]) -> TaskRow:
    """A ``task_executions`` row, in the column order of ``queries.sql``'s reads."""
    return TaskRow(
        id=decode_uuid(row[0]),
        execution_id=decode_uuid(row[1]),
        task_name=row[2],
        status=row[3],
        # NULL only in foreign rows: read the column defaults (SCHEMA.md 3).
        attempt=1 if row[4] is None else row[4],
        max_attempts=1 if row[5] is None else row[5],
        started_at=_decode_optional_timestamp(row[6]),
        completed_at=_decode_optional_timestamp(row[7]),
        retry_at=_decode_optional_timestamp(row[8]),
        error_details=row[9],
        last_error=row[10],
        recovery_attempts=row[11],
        trigger_rules=row[12],
        output_context_json=row[13],
        created_at=decode_timestamp(row[14]),
        updated_at=decode_timestamp(row[15]),
    )


def execution_row(row: Sequence[Any], tasks: Iterable[TaskRow] = ()) -> ExecutionRow:
    """A ``pipeline_executions`` row with ``tasks``, in ``queries.sql``'s order."""
    return ExecutionRow(
        id=decode_uuid(row[0]),
        pipeline_name=row[1],
        pipeline_version=row[2],
        status=row[3],
        context_json=row[4],
        started_at=decode_timestamp(row[5]),
        completed_at=_decode_optional_timestamp(row[6]),
        error_details=row[7],
        recovery_attempts=row[8],
        created_at=decode_timestamp(row[9]),
        updated_at=decode_timestamp(row[10]),
        tasks=tuple(tasks),
    )
