"""Per-ticket report rollups: each ticket's status changes, so a long report reads one row per ticket

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01 07:10:00

A 90-day report over a desk's status history (an "open" and a "solved"
event per resolved ticket, an auto-close per closed one) read ~360,000
status events and decoded their JSON to rebuild each ticket's status
intervals.  report_ticket keeps, per ticket, the status changes those
events make (inboxd.reports.tickets), with the ticket's `version` and the
newest event id when it was written: a row whose ticket changed since, or
that has a newer status event, is not used (the ticket is read live).
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('report_ticket',
    sa.Column('ticket_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('watermark', sa.BigInteger(), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.Column('computed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('ticket_id')
    )


def downgrade() -> None:
    op.drop_table('report_ticket')
