"""inboxd.store.indexes.Index takes up PostgreSQL's options when read; a daemon on SQLite never loads that dialect.

The partial indexes of inboxd.store.tables give their WHERE to PostgreSQL
through `Index(..., postgresql={...})`; their DDL on both dialects is
compared with the models' in tests/test_tables_generated.py, and a fresh
store's with a migrated one's in tests/test_fresh_store.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex

from inboxd.store.indexes import Index


def _table() -> sa.Table:
    return sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("kind", sa.String))


def test_the_same_ddl_as_sqlalchemys_own_index():
    where = sa.text("kind = 'agent'")
    ours = Index("ix_a", _table().c.id, sqlite_where=where, postgresql={"where": where})
    theirs = sa.Index("ix_a", _table().c.id, sqlite_where=where, postgresql_where=where)
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        assert str(CreateIndex(ours).compile(dialect=dialect)) == str(CreateIndex(theirs).compile(dialect=dialect))
    assert dict(ours.dialect_kwargs) == dict(theirs.dialect_kwargs)


def test_an_option_postgresql_does_not_know_fails_when_read():
    index = Index("ix_b", _table().c.id, postgresql={"wher": sa.text("kind = 'x'")})
    with pytest.raises(sa.exc.ArgumentError, match="postgresql_wher"):
        CreateIndex(index).compile(dialect=postgresql.dialect())


def test_a_daemon_on_sqlite_does_not_load_postgresqls_dialect():
    probe = ("import json, sys; import inboxd.cli.main, inboxd.config, inboxd.daemon, inboxd.store.tables; "
             "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert [m for m in json.loads(out.stdout) if m.startswith("sqlalchemy.dialects.postgresql")] == []
