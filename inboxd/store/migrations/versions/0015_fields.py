"""Placeholder for round 2 issue 5's fields change (no schema change yet)

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 14:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
