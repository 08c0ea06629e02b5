"""Report rollups: each complete day's share of the report's figures, so a long report reads days once

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01 00:30:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('report_rollup',
    sa.Column('fingerprint', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('day', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.Column('watermark', sa.BigInteger(), nullable=False),
    sa.Column('computed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('fingerprint', 'kind', 'day')
    )


def downgrade() -> None:
    op.drop_table('report_rollup')
