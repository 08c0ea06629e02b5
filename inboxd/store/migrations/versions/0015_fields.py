"""Custom ticket fields: the ticket_field table (one value per ticket and field)

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 14:00:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ticket_field',
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('value', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('set_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('set_by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
    sa.PrimaryKeyConstraint('ticket_id', 'name')
    )
    with op.batch_alter_table('ticket_field', schema=None) as batch_op:
        batch_op.create_index('ix_ticket_field_name_value', ['name', 'value'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('ticket_field', schema=None) as batch_op:
        batch_op.drop_index('ix_ticket_field_name_value')
    op.drop_table('ticket_field')
