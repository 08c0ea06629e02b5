"""The store's own column types and shared constants, without importing SQLModel.

`UTCDateTime` behaves exactly as SQLModel's type of the same name (aware
datetimes in, aware UTC out, naive ones refused), so the Core tables of
`inboxd.store.tables` store what the SQLModel classes of
`inboxd.store.models` declare, while the daemon never loads SQLModel or
pydantic (about 16 MiB of memory and 0.15 s of every start).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import types
from sqlalchemy.engine.interfaces import Dialect

# IMAP UIDs and UIDVALIDITY values are unsigned 32-bit numbers, which can be
# past the 2**31 - 1 of PostgreSQL's INTEGER.  SQLite's INTEGER holds 64 bits
# already, so there the type stays as it was.
IMAP_NUMBER = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UTCDateTime(types.TypeDecorator[datetime]):
    """Store aware datetimes and return them in UTC (a timestamp with time zone on PostgreSQL)."""

    impl = types.DateTime
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(timezone=True)

    def __repr__(self) -> str:
        return "UTCDateTime()"

    def coerce_compared_value(self, op: Any, value: Any) -> types.TypeEngine[Any]:
        # A datetime plus or minus a timedelta is an interval sum, not a datetime bind.
        if isinstance(value, timedelta):
            return types.Interval()
        return self

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError(
                "Datetime values must have timezone information. "
                "Use datetime.now(timezone.utc), or annotate the field with "
                "NaiveDatetime for naive storage."
            )
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            # Databases without time zone support (SQLite) store UTC without an offset.
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
