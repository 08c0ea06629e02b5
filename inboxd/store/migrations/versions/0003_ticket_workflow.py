"""ticket workflow: team, tier, escalation, merge

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 03:28:19.719803
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.add_column(sa.Column('solved_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('team', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('tier', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column('escalated', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('approved_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('merged_into', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_ticket_team'), ['team'], unique=False)
        batch_op.create_foreign_key('fk_ticket_merged_into', 'ticket', ['merged_into'], ['id'])



def downgrade() -> None:
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        # WARNING: constraint name is None; this directive will fail as
        # rendered.  Add a name, or use a naming convention; see
        # https://alembic.sqlalchemy.org/en/latest/naming.html
        batch_op.drop_constraint('fk_ticket_merged_into', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_ticket_team'))
        batch_op.drop_column('merged_into')
        batch_op.drop_column('approved_by')
        batch_op.drop_column('escalated')
        batch_op.drop_column('tier')
        batch_op.drop_column('team')
        batch_op.drop_column('solved_at')

