"""Sync lag: the checkpoint records the newest UID the server had (server_uid) at each sync

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 15:00:00

The lag of a folder is server_uid minus last_uid; existing rows start at 0
(no lag known) until their folder's next sync.
"""

from alembic import op
import sqlalchemy as sa


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('checkpoint', schema=None) as batch_op:
        batch_op.add_column(sa.Column('server_uid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                                      nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('checkpoint', schema=None) as batch_op:
        batch_op.drop_column('server_uid')
