"""Mail over max_message_bytes is quarantined with its bytes on disk: quarantine.raw_path, raw_sha256 nullable

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 11:00:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('quarantine', schema=None) as batch_op:
        # The file under data_dir that holds the raw bytes of a mail too large
        # for the store (then raw_sha256 is NULL: there is no rawmessage row).
        batch_op.add_column(sa.Column('raw_path', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.alter_column('raw_sha256', existing_type=sqlmodel.sql.sqltypes.AutoString(), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table('quarantine', schema=None) as batch_op:
        batch_op.alter_column('raw_sha256', existing_type=sqlmodel.sql.sqltypes.AutoString(), nullable=False)
        batch_op.drop_column('raw_path')
