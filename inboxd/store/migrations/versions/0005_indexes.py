"""indexes for listing and reports; outbox rows composed at send time

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 04:05:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # `inboxd list` sorts by last activity; reports scan events by time.
    op.create_index('ix_ticket_updated_at', 'ticket', ['updated_at'])
    op.create_index('ix_event_at', 'event', ['at'])
    op.create_index('ix_ticket_status', 'ticket', ['status'])
    # The auto-reply budget counts recent acknowledgements per address.
    op.create_index('ix_outbox_kind_created', 'outbox', ['kind', 'created_at'])
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('spec', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('spec')
    op.drop_index('ix_outbox_kind_created', 'outbox')
    op.drop_index('ix_ticket_status', 'ticket')
    op.drop_index('ix_event_at', 'event')
    op.drop_index('ix_ticket_updated_at', 'ticket')
