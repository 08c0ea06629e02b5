"""An index whose PostgreSQL options are taken up only when PostgreSQL's options are read.

SQLAlchemy checks a dialect option such as `postgresql_where` when the
index is declared, and to check it loads that dialect: the two partial
indexes of inboxd.store.tables loaded PostgreSQL's whole dialect (about
20 ms of CPU) into every daemon, on a SQLite store too.  `Index` keeps its
PostgreSQL options aside and hands them to SQLAlchemy the first time
anything asks for the index's PostgreSQL options (its CREATE INDEX on
PostgreSQL, a comparison of its DDL), when that dialect is loaded anyway.
The options are checked then, as SQLAlchemy checks them at declaration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

__all__ = ["Index"]


class Index(sa.Index):
    """`sa.Index(name, *expressions, postgresql_where=...)`, written `Index(name, *expressions,
    postgresql={"where": ...})`: the same index, the same DDL on each dialect."""

    def __init__(self, name: str, *expressions, postgresql: Mapping[str, Any] | None = None, **kw) -> None:
        self._postgresql = dict(postgresql or {})
        super().__init__(name, *expressions, **kw)

    def _kw_reg_for_dialect_cls(self, dialect_name: str):
        # SQLAlchemy calls this (a classmethod of DialectKWArgs) to make the index's options of one
        # dialect the first time they are asked for (`dialect_options[dialect_name]`); PostgreSQL's
        # get the options kept aside.
        options = super()._kw_reg_for_dialect_cls(dialect_name)
        if dialect_name == "postgresql":
            for key, value in self._postgresql.items():
                if key not in options and "*" not in options:
                    raise sa.exc.ArgumentError(
                        f"Argument 'postgresql_{key}' is not accepted by dialect 'postgresql' on behalf of {Index}")
                options[key] = value
        return options
