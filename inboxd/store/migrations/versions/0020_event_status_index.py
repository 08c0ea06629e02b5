"""Partial indexes over the events that can change a ticket's status and over the agents' messages, for the report

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01 04:00:00

The report's status history (inboxd.store.reports.live_status_events) read
every event of every ticket of the period to keep the few that name a status
(a 90-day report over 1,000,000 events: 0.4 s of SQLite).  The index holds
only those (its condition is inboxd.store.models.STATUS_CHANGE, which the
query repeats word for word so both databases can use it).  The first-contact
resolution counts each resolved ticket's agent messages, which read every
message row of those tickets (0.6 s for 95,000 tickets); the second index
(models.AGENT_MESSAGE) counts them without the rows.
"""

from alembic import op
import sqlalchemy as sa


revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None

# A copy, not an import: a migration keeps the condition it was written with.
STATUS_CHANGE = "action IN ('merge', 'autoclose') OR detail LIKE '%status%'"
AGENT_MESSAGE = "kind = 'agent'"


def upgrade() -> None:
    op.create_index('ix_event_status_change', 'event', ['ticket_id', 'at'], unique=False,
                    sqlite_where=sa.text(STATUS_CHANGE), postgresql_where=sa.text(STATUS_CHANGE))
    op.create_index('ix_message_agent', 'message', ['ticket_id'], unique=False,
                    sqlite_where=sa.text(AGENT_MESSAGE), postgresql_where=sa.text(AGENT_MESSAGE))


def downgrade() -> None:
    op.drop_index('ix_message_agent', 'message')
    op.drop_index('ix_event_status_change', 'event')
