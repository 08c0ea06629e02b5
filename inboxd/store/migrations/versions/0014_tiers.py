"""Tiers: when a ticket was last escalated, and when its tier's first reply is due

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 14:00:00

Both columns start empty: a ticket escalated before tiers had time limits
has no tier clock (inboxd.desk.tiers sets it on the next escalation).
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.add_column(sa.Column('escalated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('tier_response_due', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.create_index(batch_op.f('ix_ticket_tier_response_due'), ['tier_response_due'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ticket_tier_response_due'))
        batch_op.drop_column('tier_response_due')
        batch_op.drop_column('escalated_at')
