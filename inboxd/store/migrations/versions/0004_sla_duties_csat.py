"""sla due times, duties, csat

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 03:34:20.742765
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('csat',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('customer', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('token', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('sent_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('rating', sa.Integer(), nullable=True),
    sa.Column('label', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('comment', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('answered_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('csat', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_csat_customer'), ['customer'], unique=False)
        batch_op.create_index(batch_op.f('ix_csat_ticket_id'), ['ticket_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_csat_token'), ['token'], unique=True)

    op.create_table('duty',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('duty', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('duty', 'key', name='uq_duty_once')
    )
    with op.batch_alter_table('duty', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_duty_ticket_id'), ['ticket_id'], unique=False)

    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sla_policy', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('first_response_due', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('next_response_due', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('resolution_due', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('sla_version', sa.Integer(), nullable=False, server_default='0'))
        batch_op.create_index(batch_op.f('ix_ticket_first_response_due'), ['first_response_due'], unique=False)
        batch_op.create_index(batch_op.f('ix_ticket_next_response_due'), ['next_response_due'], unique=False)
        batch_op.create_index(batch_op.f('ix_ticket_resolution_due'), ['resolution_due'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ticket_resolution_due'))
        batch_op.drop_index(batch_op.f('ix_ticket_next_response_due'))
        batch_op.drop_index(batch_op.f('ix_ticket_first_response_due'))
        batch_op.drop_column('sla_version')
        batch_op.drop_column('resolution_due')
        batch_op.drop_column('next_response_due')
        batch_op.drop_column('first_response_due')
        batch_op.drop_column('sla_policy')

    with op.batch_alter_table('duty', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_duty_ticket_id'))

    op.drop_table('duty')
    with op.batch_alter_table('csat', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_csat_token'))
        batch_op.drop_index(batch_op.f('ix_csat_ticket_id'))
        batch_op.drop_index(batch_op.f('ix_csat_customer'))

    op.drop_table('csat')
