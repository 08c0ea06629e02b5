"""Placeholder for round 2 issue 5's csat_scores change (no schema change yet)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 14:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
