"""Alembic environment: runs migrations on the connection inboxd hands it."""

from alembic import context
from sqlmodel import SQLModel

import inboxd.store.models  # noqa: F401  (registers the tables on SQLModel.metadata)

target_metadata = SQLModel.metadata
connection = context.config.attributes.get("connection")
if connection is None:
    # Used by `alembic revision --autogenerate` during development.
    from sqlalchemy import create_engine

    url = context.config.get_main_option("sqlalchemy.url")
    connection = create_engine(url).connect()

context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
