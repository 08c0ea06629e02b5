"""Ticket numbers safe under concurrent writers: the counter table (SQLite) and the ticket_number sequence (PostgreSQL)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 09:00:00

Both are seeded from the highest ticket id, so an existing store keeps
numbering after its last ticket (inboxd.store.counters).  An empty store gets
no counter row: the first ticket creates it, and a store copied into it
(`inboxd migrate-store`) brings its own.
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('counter',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        op.execute("CREATE SEQUENCE ticket_number AS BIGINT START WITH 1 MINVALUE 1")
        # is_called false: the first nextval gives max(id) + 1 (1 on an empty store).
        op.execute("SELECT setval('ticket_number', (SELECT coalesce(max(id), 0) + 1 FROM ticket), false)")
    else:
        op.execute("INSERT INTO counter (name, value) SELECT 'ticket_number', max(id) FROM ticket"
                   " HAVING max(id) IS NOT NULL")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP SEQUENCE ticket_number")
    op.drop_table('counter')
