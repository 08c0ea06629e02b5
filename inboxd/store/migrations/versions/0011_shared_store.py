"""A store shared by several daemons: folder leases; IMAP UIDs and UIDVALIDITY as BIGINT on PostgreSQL

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-01 09:00:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0011'
down_revision = '0009'
branch_labels = None
depends_on = None

# The columns that hold IMAP's unsigned 32-bit numbers.  SQLite's INTEGER is
# 64 bits already; PostgreSQL's is 32 bits, signed.
IMAP_NUMBERS = {
    'checkpoint': ('uidvalidity', 'last_uid'),
    'sighting': ('uidvalidity', 'uid'),
    'skipped': ('uidvalidity', 'uid'),
    'quarantine': ('uidvalidity', 'uid'),
}


def upgrade() -> None:
    # One row per folder: who syncs it, and until when (inboxd.store.leases).
    op.create_table('lease',
    sa.Column('mailbox', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('folder', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('holder', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('mailbox', 'folder')
    )
    if op.get_bind().dialect.name == 'postgresql':
        for table, columns in IMAP_NUMBERS.items():
            for column in columns:
                op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer(),
                                existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for table, columns in IMAP_NUMBERS.items():
            for column in columns:
                op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger(),
                                existing_nullable=False)
    op.drop_table('lease')
