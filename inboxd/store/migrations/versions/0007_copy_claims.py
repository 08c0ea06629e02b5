"""Sent copies are claimed like sends: a lease per copy, and an index to find them

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 09:00:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        # When a poller claimed the copy for the Sent folder; a claim older
        # than the outbox lease belongs to a daemon that died mid-append.
        batch_op.add_column(sa.Column('copy_claimed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    # Every sync looks for copies still to append; they are few among many sent rows.
    op.create_index('ix_outbox_copy', 'outbox', ['copy_status', 'mailbox'])


def downgrade() -> None:
    op.drop_index('ix_outbox_copy', 'outbox')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('copy_claimed_at')
