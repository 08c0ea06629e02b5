"""IMAP write-back: what inboxd has written to each message on the server (keywords, \\Seen, Gmail labels)

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30 21:00:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Filled in by the write-back change (issue 16); a no-op until then.
    pass


def downgrade() -> None:
    pass
