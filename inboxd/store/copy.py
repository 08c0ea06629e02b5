"""Copy a whole store into another, empty one: `inboxd migrate-store --from URL --to URL`.

The copy goes through the store's Core tables (`inboxd.store.tables`, generated
from the models) with SQLAlchemy, so each
value is converted by its column's type: SQLite keeps timestamps as naive
UTC text and booleans as 0/1, PostgreSQL as timestamptz and boolean, and
both sides read and write them as Python values.  Tables are copied parents
first (the metadata's dependency order), in batches, all in one transaction
on the target: a copy that fails leaves the target as empty as it was.

Afterwards the target's id sequences (PostgreSQL) and its ticket-number
counter (`inboxd.store.counters`: a sequence on PostgreSQL, a counter row on
SQLite) are moved past the copied ids, and the copy is checked: every table's row count, and a checksum over every value of
the tickets, messages, events and raw mail, must be the same on both sides.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import (Connection, DateTime, Engine, Integer, String, Table, bindparam, func, select, text,
                        type_coerce, update)
from inboxd.store import leases
from inboxd.store.counters import sync_ticket_number
from inboxd.store.engine import reading, writing
from inboxd.store.tables import metadata
from inboxd.store.types import UTCDateTime


def tables() -> tuple[Table, ...]:
    """Every table of the models, parents before children, so every foreign key finds its row.

    Asked at each copy rather than once at import, so no table declared in
    the models can be left out.
    """
    return tuple(metadata.sorted_tables)


# The tables whose every value the check compares, not only their counts.
CHECKSUMMED = ("ticket", "message", "event", "rawmessage")
# A batch is this many rows, or fewer when they add up to this many bytes
# (raw mail and outbox rows can be megabytes each).
BATCH_ROWS = 500
BATCH_BYTES = 32 * 1024 * 1024


class CopyError(Exception):
    """The copy cannot start or did not come out equal; str() is one line."""


@dataclass
class CopyReport:
    counts: dict[str, int] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(self.counts.values())


def copy_rows(source: Engine, target: Engine, now: datetime,
               progress: Callable[[str, int], None] | None = None) -> CopyReport:
    """Copy every row of `source` into `target`, both migrated to the same schema; see the module docstring.

    Refused while a daemon holds a folder lease on the source (it would go
    on writing what the copy has already passed) and when the target holds
    any row at all.
    """
    started = time.monotonic()
    with reading(source) as src:
        busy = [f"{mailbox}/{folder} by {held.name} until {held.expires_at:%Y-%m-%dT%H:%M:%SZ}"
                for (mailbox, folder), held in sorted(leases.holders(src).items()) if held.live(now)]
    if busy:
        raise CopyError(f"a daemon still syncs the source store ({busy[0]}); stop every daemon first")
    report = CopyReport()
    with reading(source) as src, writing(target) as dst:
        for table in tables():
            count = dst.execute(select(func.count()).select_from(table)).scalar_one()
            if count:
                raise CopyError(f"the target store is not empty (table {table.name} has {count} row(s));"
                                " migrate-store copies into an empty, newly created store only")
        for table in tables():
            report.counts[table.name] = _copy_table(src, dst, table)
            if progress is not None:
                progress(table.name, report.counts[table.name])
        if dst.dialect.name == "postgresql":
            _reset_sequences(dst)
        # The next ticket's number follows the copied tickets, whichever way the target keeps it.
        sync_ticket_number(dst)
    report.seconds = time.monotonic() - started
    _verify(source, target, report)
    return report


def _copy_table(src: Connection, dst: Connection, table: Table) -> int:
    # A column that points at its own table (a merged ticket's merged_into)
    # may name a row that comes later: it is filled in once all rows are there.
    self_refs = [fk.parent.name for fk in table.foreign_keys if fk.column.table is table]
    pk = list(table.primary_key.columns)
    copied = 0
    later: list[dict] = []
    for batch in _batches(src, table):
        if dst.dialect.name == "postgresql":
            _check_storable(table, batch)
        if self_refs:
            later += [{"pk_" + c.name: row[c.name] for c in pk} | {c: row[c] for c in self_refs}
                      for row in batch if any(row[c] is not None for c in self_refs)]
            batch = [row | {c: None for c in self_refs} for row in batch]
        dst.execute(table.insert(), batch)
        copied += len(batch)
    if later:
        where = [c == bindparam("pk_" + c.name) for c in pk]
        dst.execute(update(table).where(*where).values({c: bindparam(c) for c in self_refs}), later)
    return copied


def _batches(src: Connection, table: Table) -> Iterator[list[dict]]:
    """The table's rows in primary-key order, as dicts of Python values, a batch at a time."""
    # SQLite timestamps are text.  SQLAlchemy's own reader expects exactly
    # its own format; reading the text and parsing it here also takes the
    # ISO forms ("T", "Z", an offset) that SQL written by hand may have left.
    as_text = {c.name for c in table.columns if src.dialect.name == "sqlite" and _is_time(c)}
    columns = [type_coerce(c, String).label(c.name) if c.name in as_text else c for c in table.columns]
    # PostgreSQL reads through a server-side cursor; SQLite reads lazily anyway.
    result = src.execution_options(stream_results=True).execute(
        select(*columns).order_by(*table.primary_key.columns))
    batch: list[dict] = []
    size = 0
    for row in result.yield_per(100).mappings():
        values = {name: _utc(value) if name in as_text else value for name, value in row.items()}
        batch.append(values)
        size += sum(len(v) for v in values.values() if isinstance(v, bytes | str))
        if len(batch) >= BATCH_ROWS or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _check_storable(table: Table, batch: list[dict]) -> None:
    # PostgreSQL's text cannot hold NUL, which SQLite's can.  Ingest drops
    # NULs from text, so one here was written some other way: say where.
    for row in batch:
        for name, value in row.items():
            if isinstance(value, str) and "\x00" in value:
                key = ", ".join(f"{c.name}={row[c.name]}" for c in table.primary_key.columns)
                raise CopyError(f"table {table.name}, row {key}: column {name} holds a NUL character,"
                                " which PostgreSQL cannot store; remove it from the source store first")


def _is_time(column) -> bool:
    return isinstance(column.type, UTCDateTime | DateTime)


def _utc(value: str | datetime | None) -> datetime | None:
    """A SQLite timestamp as an aware UTC datetime; one without an offset is UTC already."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _reset_sequences(dst: Connection) -> None:
    """Move each id sequence past the copied ids, so the next insert does not collide with them.

    Rows were inserted with their ids given, which PostgreSQL's sequences
    (unlike SQLite's rowid) do not notice.
    """
    quote = dst.dialect.identifier_preparer.quote
    for table in tables():
        pk = list(table.primary_key.columns)
        if len(pk) != 1 or not isinstance(pk[0].type, Integer):
            continue
        # pg_get_serial_sequence is NULL for a key without a sequence, and setval(NULL) does nothing.
        dst.execute(text(
            f"SELECT setval(pg_get_serial_sequence(:table, :column),"
            f" coalesce((SELECT max({quote(pk[0].name)}) FROM {quote(table.name)}), 0) + 1, false)"),
            {"table": table.name, "column": pk[0].name})


def _verify(source: Engine, target: Engine, report: CopyReport) -> None:
    """Count every table on both sides and checksum the ones that matter most; CopyError on any difference."""
    with reading(source) as src, reading(target) as dst:
        for table in tables():
            theirs = dst.execute(select(func.count()).select_from(table)).scalar_one()
            if theirs != report.counts[table.name]:
                raise CopyError(f"table {table.name}: {report.counts[table.name]} row(s) copied but {theirs}"
                                " in the target")
        for name in CHECKSUMMED:
            table = metadata.tables[name]
            ours, theirs = checksum(src, table), checksum(dst, table)
            if ours != theirs:
                raise CopyError(f"table {name}: the target's rows differ from the source's (checksum)")
            report.checksums[name] = ours


def checksum(conn: Connection, table: Table) -> str:
    """SHA-256 over every value of every row in primary-key order, in a form both databases give alike."""
    digest = hashlib.sha256()
    for batch in _batches(conn, table):
        for row in batch:
            for name in sorted(row):
                digest.update(f"{name}={_canonical(row[name])}\0".encode("utf-8", "surrogatepass"))
            digest.update(b"\n")
    return digest.hexdigest()


def _canonical(value) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, bytes | memoryview):
        return hashlib.sha256(bytes(value)).hexdigest()
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)
