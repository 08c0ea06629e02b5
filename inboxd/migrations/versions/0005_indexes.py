"""indexes for listing and reports

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 04:05:00
"""

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


def downgrade() -> None:
    op.drop_index('ix_ticket_status', 'ticket')
    op.drop_index('ix_event_at', 'event')
    op.drop_index('ix_ticket_updated_at', 'ticket')
