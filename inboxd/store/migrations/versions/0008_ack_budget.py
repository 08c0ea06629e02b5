"""The auto-reply budget counts by indexed keys: the normalised address and the domain of each acknowledgement

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 10:00:00
"""

import json

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def _budget_key(address: str) -> tuple[str, str]:
    # As inboxd.outbound.outbox.budget_key at the time of this migration.
    local, _, domain = address.strip().rpartition("@")
    return f"{local.split('+', 1)[0].casefold()}@{domain.lower()}", domain.lower()


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ack_key', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('ack_domain', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.create_index('ix_outbox_ack_key', 'outbox', ['ack_key', 'created_at'])
    op.create_index('ix_outbox_ack_domain', 'outbox', ['ack_domain', 'created_at'])
    # Acknowledgements already sent count against the budget from the start.
    # Portable SQL with named parameters, so the migration also runs on PostgreSQL.
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, recipients FROM outbox WHERE kind = 'ack'")).all()
    for row_id, recipients in rows:
        addresses = json.loads(recipients or "[]")
        if addresses:
            key, domain = _budget_key(addresses[0])
            conn.execute(sa.text("UPDATE outbox SET ack_key = :key, ack_domain = :domain WHERE id = :id"),
                         {"key": key, "domain": domain, "id": row_id})


def downgrade() -> None:
    op.drop_index('ix_outbox_ack_domain', 'outbox')
    op.drop_index('ix_outbox_ack_key', 'outbox')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('ack_domain')
        batch_op.drop_column('ack_key')
